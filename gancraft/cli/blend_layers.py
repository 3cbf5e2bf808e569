"""gancraft blend-layers: layer swapping, resolution-dependent interpolation and channel swaps."""

from __future__ import annotations

import click

from ..checkpoint.io import load
from ..errors import GancraftError
from ..io_util import check_output_path
from ..latent.seeds import MAX_SEED
from ..merge.blend import ChannelSwap, blend_layers, render_preview
from ..merge.channels import cluster_channels, write_cluster_map
from .average import parse_nets
from .common import device_option, emit_path, force_option, log, resolve_device
from .paths import InputFile, OutputFile, derived_name, stem
from .types import IntRanges


@click.command("blend-layers")
@click.option(
    "--low",
    required=True,
    type=InputFile(),
    help="Model for the coarse (low-resolution) layers; also the source of the mapping network. "
    "'-' reads standard input.",
)
@click.option(
    "--high",
    "highs",
    required=True,
    multiple=True,
    type=InputFile(),
    help="Model for the fine layers. Repeat for resolution-dependent mixes of several models.",
)
@click.option(
    "-o",
    "--output",
    type=OutputFile(".st"),
    help="Checkpoint to write (native); '-' writes it to standard output [default: LOW+HIGH.blend.st "
    "in the current folder, e.g. ffhq+ukiyoe.blend.st].",
)
@click.option(
    "--switch",
    type=int,
    metavar="RES",
    help="Layers at RES and above from --high, below from --low [default with one --high and no "
    "--alpha: the block a third of the way up, as Pinkney's 32 of 1024 px; 16 at 256 px]. "
    "StyleGAN3: a layer index (see below).",
)
@click.option(
    "--pinkney",
    metavar="RES[:LEVEL]",
    help="Blend exactly as Pinkney's blend_models.py --res RES --level LEVEL [--blend_width W] "
    "(LEVEL 0 if omitted): its hard switch starts the high model a whole resolution after "
    "--switch's (see below).",
)
@click.option(
    "--switch-level",
    type=click.IntRange(0, 1),
    default=0,
    show_default=True,
    help="Switch at the block's first conv (0) or its second conv and toRGB (1).",
)
@click.option(
    "--blend-width",
    type=float,
    metavar="W",
    help="Smooth switch: the high weight is sigmoid((layer position - switch position) / W), two "
    "positions per resolution (with --switch or --pinkney).",
)
@click.option(
    "--alpha",
    metavar="RES:A,...",
    help="Weight of --high per resolution, e.g. 4:0,8:0,16:0.3,32:1 (unlisted resolutions repeat the "
    "one below; the low model gets 1 - A). Several --high: 16:0.3/0.2.",
)
@click.option(
    "--mapping-from",
    default="low",
    show_default=True,
    metavar="low|high|N",
    help="Where the mapping network comes from (N: 0 = low, 1.. = the --high models in order).",
)
@click.option(
    "--w-avg-from",
    default=None,
    metavar="low|high|N",
    help="Where w_avg comes from [default: with the mapping network].",
)
@click.option(
    "--torgb-from",
    default="blend",
    show_default=True,
    metavar="blend|low|high|N",
    help="toRGB layers: follow their resolution's blend, or all from one model.",
)
@click.option("--nets", metavar="G_ema,G", help="Generators to blend (default: those all inputs have).")
@click.option("--keep-d", is_flag=True, help="Also copy the low model's discriminator into the output.")
@click.option(
    "--cluster-layer",
    metavar="bRES.convN",
    help="Conv layer whose channels are clustered (e.g. b32.conv1), for --cluster-map and --channels.",
)
@click.option("--clusters", type=click.IntRange(1), default=8, show_default=True, help="Number of clusters.")
@click.option(
    "--cluster-samples",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="Images sampled for the clustering (seeds S..S+N-1, S = --cluster-seed).",
)
@click.option("--cluster-seed", type=int, default=0, show_default=True, help="Seed of the clustering.")
@click.option(
    "--cluster-map",
    type=click.Path(dir_okay=False),
    metavar="FILE.png",
    help="Write the low model's images with their pixels coloured by cluster (no -o needed).",
)
@click.option(
    "--channels",
    "channel_clusters",
    type=IntRanges(),
    metavar="K1,K2",
    help="Swap only the channels of these clusters of --cluster-layer from the (first) high model.",
)
@click.option(
    "--preview",
    type=click.Path(dir_okay=False),
    metavar="FILE.png",
    help="Also write a grid: a row per seed, columns low | blended | high.",
)
@click.option(
    "--preview-seeds",
    type=IntRanges((0, MAX_SEED)),
    metavar="N,N-M",
    default="0-3",
    show_default=True,
    help="Seeds of the preview grid.",
)
@click.option("--preview-psi", type=float, default=1.0, show_default=True, help="Truncation psi of the preview.")
@device_option
@force_option
def command(
    low: str,
    highs: tuple[str, ...],
    output: str | None,
    switch: int | None,
    switch_level: int,
    blend_width: float | None,
    alpha: str | None,
    mapping_from: str,
    w_avg_from: str | None,
    torgb_from: str,
    pinkney: str | None,
    nets: str | None,
    keep_d: bool,
    cluster_layer: str | None,
    clusters: int,
    cluster_samples: int,
    cluster_seed: int,
    cluster_map: str | None,
    channel_clusters: list[int] | None,
    preview: str | None,
    preview_seeds: list[int],
    preview_psi: float,
    device: str | None,
    force: bool,
) -> None:
    """Blend generators layer by layer (Justin Pinkney's layer swapping).

    Coarse layers (pose, shape) come from --low and fine layers (texture, style) from --high,
    with a hard or smooth switch, or any weight per resolution. Going further, the channels of
    one layer can be clustered (spherical k-means over sampled images, as in Editing in Style)
    and only the chosen clusters' channels swapped in: look at --cluster-map first to see which
    cluster is eyes or hair, then rerun with --channels. Clustering is seeded, so the numbers
    stay the same between runs.

    \b
    Layer positions and the two switch rules:
      Layers are numbered two per resolution: position 2i is level 0 of the i-th resolution
      (the 4x4 const, or the block's upsampling conv0), 2i+1 is level 1 (conv1 and toRGB).
      With S the position of the switch and x = position - S, the high model's weight is
        --switch RES [--switch-level L]   1 if x >= 0 else 0   (RES itself from --high)
        --pinkney RES[:L]                 1 if x > 1 else 0    (blend_models.py)
        either, with --blend-width W      1 / (1 + exp(-x / W))
      --pinkney also keeps what the script never blends from the low model: the 4x4
      block's conv (TF '4x4/Conv' is neither Conv0_up nor Conv1) and the noise images.
      Worked example, a 64 px model (positions 4:0,1 8:2,3 16:4,5 32:6,7 64:8,9):
        --pinkney 16 (S=4)      high from 32 px on, as --switch 32 (noise images aside)
        --pinkney 16:1 (S=5)    high from 32's conv1/toRGB on: --switch 32 --switch-level 1
        --pinkney 16 --blend-width 1   16 px conv0 0.5, its conv1/toRGB 0.731, 32 px conv0
                                       0.881, 8 px conv0 0.119; the 4x4 conv 0 (low)

    \b
    StyleGAN3 models (no resolution blocks):
      Positions are the layer indices of L0 ... LN (LN the toRGB; `gancraft inspect`
      lists each layer's size, sampling rate and cutoff, so a switch in sampling-rate
      terms is the index of the first layer at that rate). --switch N takes L0 ...
      L<N-1> from --low and L<N> ... LN from --high; --blend-width W
      gives L<i> the weight 1 / (1 + exp(-(i - N) / W)); --alpha lists indices
      (0:0,5:0.5,10:1). The Fourier-feature input goes with L0; its frequencies and
      phases are copied from the model that dominates L0. Default switch: L5 of 15.
      --pinkney, --switch-level and channel clusters are StyleGAN2 only.

    \b
    Examples:
      gancraft blend-layers --low ffhq.st --high ukiyoe.st            # writes ffhq+ukiyoe.blend.st
      gancraft blend-layers --low ffhq.st --high ukiyoe.st --switch 32 -o blended.st
      gancraft average a.st b.st -o - | gancraft blend-layers --low - --high c.st -o mix.st
      gancraft blend-layers --low ffhq.st --high toon.st --switch 32 --blend-width 1 \\
          --preview blend.png -o blended.st
      gancraft blend-layers --low ffhq.st --high toon.st --pinkney 32 --blend-width 0.7 -o toon.st
      gancraft blend-layers --low a.st --high b.st --alpha 4:0,8:0,16:0.3,32:1 -o mix.st
      gancraft blend-layers --low a.st --high b.st --high c.st --alpha 4:0/0,16:0.5/0,64:0/1 -o three.st
      gancraft blend-layers --low a.st --high b.st --cluster-layer b32.conv1 --cluster-map clusters.png
      gancraft blend-layers --low a.st --high b.st --cluster-layer b32.conv1 --channels 2,5 -o eyes.st
      gancraft blend-layers --low sg3-ffhq.pkl --high sg3-toon.pkl --switch 6 --blend-width 1 -o toon3.st
    """
    dev = resolve_device(device)
    # --cluster-map alone only looks at the low model; anything else writes a blend
    if output is None and not (cluster_map and not channel_clusters and not preview):
        output = derived_name([stem(low), *map(stem, highs)], "blend")
    if (cluster_map or channel_clusters) and not cluster_layer:
        raise GancraftError("--cluster-map and --channels need --cluster-layer (e.g. b32.conv1)")
    for extra in (cluster_map, preview):
        if extra:
            check_output_path(extra, force=force, inputs=(low, *highs))
    if output:
        check_output_path(output, force=force, inputs=(low, *highs))
    swap = None
    if cluster_layer and (cluster_map or channel_clusters):
        low_ckpt = load(low)
        if low_ckpt.family == "stylegan3":
            raise GancraftError("--cluster-layer: channel clusters and swaps are not available for StyleGAN3 models")
        log(f"clustering {cluster_layer} of {low} over {cluster_samples} images into {clusters} clusters")
        found = cluster_channels(low_ckpt, cluster_layer, clusters, cluster_samples, cluster_seed, device=dev)
        if channel_clusters:
            channels = found.channels(channel_clusters)
            log(f"swapping {len(channels)} channels of {cluster_layer} (clusters {channel_clusters}) from {highs[0]}")
            swap = ChannelSwap(cluster_layer, channels)
    if output is not None:
        emit_path(
            blend_layers(
                low,
                list(highs),
                output,
                switch=switch,
                blend_width=blend_width,
                level=switch_level,
                alpha=alpha,
                mapping_from=mapping_from,
                w_avg_from=w_avg_from,
                torgb_from=torgb_from,
                nets=parse_nets(nets),
                keep_d=keep_d,
                channel_swap=swap,
                pinkney=pinkney,
                force=force,
                progress=True,
            )
        )
    if cluster_map:
        emit_path(write_cluster_map(low_ckpt, found, cluster_map, device=dev, force=force))
    if preview:
        emit_path(
            render_preview(
                [low, output, *highs],
                preview,
                preview_seeds,
                preview_psi,
                device=dev,
                force=force,
            )
        )
