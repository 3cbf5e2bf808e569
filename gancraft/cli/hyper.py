"""gancraft hyper: train one HyperDomainNet for many text-described domains of a frozen generator."""

from __future__ import annotations

import click

from .common import device_option, emit_path, force_option, log, modulation_option, resolve_device
from .options import ClipOptions, batch_option, clip_options, trunc_option


@click.command("hyper")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "--prompts",
    "prompts_file",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Text file with one target-domain description per line ('#' lines and blank lines skipped).",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write.")
@click.option(
    "--source-prompt",
    default="Photo",
    show_default=True,
    help="What the generator makes now; directions in CLIP space start here (official: Photo).",
)
@clip_options(
    model="ViT-B-32",
    model_help="open_clip model: it embeds the prompts for the hyper-network and scores the images.",
    download_help="Allow open_clip to download the OpenAI weights.",
)
@click.option("--steps", type=int, default=10000, show_default=True, help="Training steps (official: 10000).")
@batch_option(default=8, help="Images per step, each with its own latent and prompt mixture (official: 8).")
@click.option(
    "--lr", type=float, default=5e-5, show_default=True, help="Adam learning rate, betas (0.9, 0.999) (official: 5e-5)."
)
@click.option("--width", type=int, default=512, show_default=True, help="Width of the residual mapper.")
@click.option(
    "--depth",
    type=int,
    default=4,
    show_default=True,
    help="Backbone depth: one linear block then DEPTH - 1 residual blocks.",
)
@click.option(
    "--head-depth",
    type=int,
    default=2,
    show_default=True,
    help="Per conv layer: HEAD_DEPTH - 1 residual blocks then a linear layer.",
)
@click.option(
    "--tt-weight",
    type=float,
    default=0.4,
    show_default=True,
    help="Weight of the target-target direction loss between the batch's domains (official: 0.4).",
)
@click.option(
    "--angle-weight",
    type=float,
    default=0.0,
    show_default=True,
    help="Weight of the in-domain angle consistency loss (not in td_multiple; the official 'indomain' loss).",
)
@click.option(
    "--norm-weight",
    type=float,
    default=0.0,
    show_default=True,
    help="Weight of the domain-norm penalty, the vectors' mean square (not in td_multiple).",
)
@click.option(
    "--convex-hull/--no-convex-hull",
    default=True,
    show_default=True,
    help="Train on Dirichlet mixtures of the batch's prompt embeddings instead of the prompts alone.",
)
@click.option(
    "--resample-cos",
    type=float,
    default=0.95,
    show_default=True,
    help="Move each loss target to a random point with at least this cosine to it; 1 turns it off.",
)
@click.option(
    "--crop",
    type=float,
    default=0.8,
    show_default=True,
    help="CLIP sees a random square crop of this fraction of each image side; 1 turns it off.",
)
@click.option(
    "--style-mixing",
    type=float,
    default=0.9,
    show_default=True,
    help="Probability that a batch mixes two latents at a random layer.",
)
@click.option(
    "--templates/--no-templates",
    default=True,
    show_default=True,
    help="Average the loss targets' text embeddings over the 79 ImageNet prompt templates.",
)
@trunc_option("truncation_psi", help="Truncation psi of the training latents.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of initialisation, prompts and latents.")
@modulation_option
@device_option
@force_option
def command(
    checkpoint: str,
    prompts_file: str,
    output: str,
    source_prompt: str,
    clip: ClipOptions,
    steps: int,
    batch: int,
    lr: float,
    width: int,
    depth: int,
    head_depth: int,
    tt_weight: float,
    angle_weight: float,
    norm_weight: float,
    convex_hull: bool,
    resample_cos: float,
    crop: float,
    style_mixing: float,
    templates: bool,
    truncation_psi: float,
    seed: int,
    modulation: str,
    device: str | None,
    force: bool,
) -> None:
    """Train a hyper-network that maps a text prompt to a domain vector of CHECKPOINT's generator.

    The generator stays frozen: a domain vector only rescales the input channels of every conv
    layer, so each domain costs one vector (about 6k numbers at 1024 px) and the hyper-network
    predicts it from the CLIP embedding of any description, including ones it never saw.

    Defaults are the official code's td_multiple.yaml (MACderRu/HyperDomainNet, trainer
    td_multiple_resample_and_convex): residual mapper (width 512, backbone 4, head 2, ~14M
    parameters at 1024 px, linear layers Xavier x 0.01), directional CLIP loss + 0.4 x
    target-target direction loss, prompt mixtures inside their convex hull, targets resampled
    within cos 0.95, random 80% crops, style mixing 0.9, Adam 5e-5 for 10k steps of batch 8.

    
    Taken from the official code where the paper is silent or says otherwise:
      - the losses are computed with the hyper-network's own CLIP only (the config lists
        ViT-B/32 and ViT-B/16, but resampling drops every other encoder);
      - source and adapted images get independent random noise and independent crops;
      - the 79 templates are OpenAI's ImageNet templates without 'a photo of many {}.';
      - the domain vectors multiply each conv layer's weight after demodulation
        (--modulation-order; the paper's figure draws them before it).

    OUTPUT holds CHECKPOINT's tensors unchanged (domain vectors included), the hyper-network
    as hyper.* tensors, and one domain per training prompt; sample and render take
    --prompt TEXT with it.

    
    Examples:
      printf 'Anime Painting\\nMona Lisa Painting\\n3D Render in the Style of Pixar\\n' > styles.txt
      gancraft hyper ffhq.pkl --prompts styles.txt --clip-weights ViT-B-32.pt -o ffhq-hyper.st
      gancraft hyper ffhq.pkl --prompts styles.txt --steps 2000 --no-convex-hull \\
          --download-clip -o ffhq-hyper.st
    """
    from ..checkpoint import load, save
    from ..io_util import check_output_path
    from ..metrics import clip as clip_mod
    from ..train import hyper as hyper_mod

    prompts = hyper_mod.read_prompts(prompts_file)
    settings = hyper_mod.HyperSettings(
        steps=steps,
        batch=batch,
        lr=lr,
        seed=seed,
        source_prompt=source_prompt,
        width=width,
        depth=depth,
        head_depth=head_depth,
        tt_weight=tt_weight,
        angle_weight=angle_weight,
        norm_weight=norm_weight,
        convex_hull=convex_hull,
        resample_cos=None if resample_cos == 1 else resample_cos,
        crop=None if crop == 1 else crop,
        style_mixing=style_mixing,
        templates=templates,
        truncation_psi=truncation_psi,
        modulation=modulation,
    ).validate()
    hyper_mod.check_prompts(prompts, source_prompt, where=prompts_file)
    check_output_path(output, force=force, inputs=(checkpoint, prompts_file))
    dev = resolve_device(device)
    parent = load(checkpoint)
    hyper_mod.check_generator(parent)
    encoder = clip_mod.load_clip(clip.clip_model, weights=clip.clip_weights, device=dev, download=clip.download_clip)
    log(
        f"hyper: {len(prompts)} prompts, {hyper_mod.parameters_per_domain(parent):,} parameters per domain, "
        f"CLIP {encoder.description}"
    )
    result = hyper_mod.train_hyper(
        parent, prompts, encoder, settings, device=dev, progress=True, clip_model=clip.clip_model
    )
    n_hyper = sum(p.numel() for p in result.hyper.parameters())
    final = result.log[-1]
    log(
        f"hyper: hyper-network {n_hyper:,} parameters; last step direction {final['direction']:.4f}, "
        f"tt-direction {final['tt_direction']:.4f}"
    )
    ckpt = hyper_mod.hyper_checkpoint(
        parent,
        result,
        {"checkpoint": checkpoint, "prompts_file": prompts_file, "clip_model": clip.clip_model, "clip": encoder.name},
        inputs=[checkpoint, prompts_file],
    )
    emit_path(save(ckpt, output, force=force, inputs=(checkpoint, prompts_file)))
