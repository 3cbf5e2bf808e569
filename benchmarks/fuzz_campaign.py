"""`make fuzz`: the long fuzz campaign of #22 — thousands of damaged files per reader, then the
command line's full table of numeric options x hostile values — and its figures.

    python benchmarks/fuzz_campaign.py [--cases 2000] [--seed 1] [--jobs 2] [--readers native,tf] [--no-cli]

Exits 1 if any case ended in a traceback, a hang or a worker death.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

import fuzz_files  # noqa: E402


def files_campaign(readers: tuple[str, ...], cases: int, seed: int, jobs: int) -> int:
    with tempfile.TemporaryDirectory(prefix="gancraft-fuzz-") as tmp:
        t0 = time.monotonic()
        reports = fuzz_files.run_campaign(readers, cases, seed, Path(tmp), jobs=jobs)
        wall = time.monotonic() - t0
    print(
        f"{'reader':<12} {'cases':>6} {'loaded':>7} {'refused':>8} {'tracebacks':>10} {'hangs':>6} "
        f"{'max case s':>10} {'peak MiB':>9}"
    )
    failed = 0
    for r in reports.values():
        bad = r.counts.get("crash", 0)
        hangs = r.counts.get("hang", 0)
        failed += bad + hangs
        print(
            f"{r.reader:<12} {r.cases:>6} {r.counts.get('loaded', 0):>7} {r.counts.get('refused', 0):>8} "
            f"{bad:>10} {hangs:>6} {r.max_seconds:>10.3f} {r.peak_rss / 2**20:>9.0f}"
        )
    print(
        f"files: {sum(r.cases for r in reports.values())} cases in {wall:.0f} s (CPU seconds per case; peak "
        f"resident memory per worker, each under a {fuzz_files.MEMORY_HEADROOM >> 30} GiB data limit)"
    )
    for r in reports.values():
        for f in r.failures[:5]:
            print(f"\n{r.reader} case {f['case']} ({f.get('mutation', '?')}): {f['outcome']}\n{f['detail']}")
    return failed


def cli_campaign() -> int:
    import torch

    from gancraft.metrics import clip as clip_mod

    import hostile_cli
    from conftest import make_tiny_checkpoint

    torch.set_num_threads(1)
    tiny = clip_mod.load_clip(
        "ViT-B-32",
        random_init=True,
        seed=0,
        embed_dim=16,
        vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
    )
    # hyper needs CLIP, whose weights are not downloadable here: a random tiny one stands in
    clip_mod.load_clip = lambda *a, **k: tiny
    with tempfile.TemporaryDirectory(prefix="gancraft-cli-fuzz-") as tmp:
        root = Path(tmp)
        (root / "files").mkdir()
        files = hostile_cli.make_files(root / "files", make_tiny_checkpoint)
        t0 = time.monotonic()
        failures, outcomes = hostile_cli.run_table(files, root / "out")
        wall = time.monotonic() - t0
    exit0 = sum(o.exit_code == 0 for o in outcomes)
    exit2 = sum(o.exit_code == 2 for o in outcomes)
    print(
        f"command line: {len(outcomes)} cases ({len(hostile_cli.HOSTILE)} values x every numeric option of "
        f"every command), exit 0: {exit0}, exit 2 with one line: {exit2 - len(failures)}, failures: "
        f"{len(failures)}, slowest {max(o.seconds for o in outcomes):.1f} s, {wall:.0f} s in all"
    )
    for f in failures:
        print(f)
    return len(failures)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000, help="cases per reader")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes at a time")
    ap.add_argument("--readers", default=",".join(fuzz_files.READERS))
    ap.add_argument("--no-cli", action="store_true", help="skip the command-line table")
    args = ap.parse_args()
    failed = files_campaign(tuple(args.readers.split(",")), args.cases, args.seed, args.jobs)
    if not args.no_cli:
        failed += cli_campaign()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
