"""gancraft hyper: train one HyperDomainNet for many text-described domains of a frozen generator."""

from __future__ import annotations

import click

from .common import device_option, emit_path, force_option, log, resolve_device


@click.command("hyper")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--prompts", "prompts_file", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Text file with one target-domain description per line ('#' lines and blank lines skipped).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write.")
@click.option("--source-prompt", default="a photo", show_default=True,
              help="What the generator makes now; directions in CLIP space start here.")
@click.option("--clip-model", default="ViT-B-32", show_default=True, help="open_clip model name.")
@click.option("--clip-weights", type=click.Path(dir_okay=False), default=None,
              help="CLIP weights file; default: an earlier open_clip download found in the local caches.")
@click.option("--download-clip", is_flag=True, help="Allow open_clip to download the OpenAI weights.")
@click.option("--steps", type=int, default=2000, show_default=True, help="Training steps.")
@click.option("--batch", type=int, default=8, show_default=True,
              help="Images per step, split into as many prompts as leave two latents each.")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Adam learning rate of the hyper-network.")
@click.option("--width", type=int, default=512, show_default=True, help="Hidden width of the hyper-network.")
@click.option("--depth", type=int, default=2, show_default=True, help="Hidden layers of the hyper-network.")
@click.option("--tt-weight", type=float, default=0.1, show_default=True,
              help="Weight of the target-target direction loss between domains.")
@click.option("--angle-weight", type=float, default=0.5, show_default=True,
              help="Weight of the in-domain angle consistency loss (keeps images diverse).")
@click.option("--norm-weight", type=float, default=0.1, show_default=True,
              help="Weight of the domain-norm penalty (mean square of the domain vectors).")
@click.option("--truncation", "truncation_psi", type=float, default=1.0, show_default=True,
              help="Truncation psi of the training latents.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of initialisation, prompts and latents.")
@device_option
@force_option
def command(checkpoint: str, prompts_file: str, output: str, source_prompt: str, clip_model: str,
            clip_weights: str | None, download_clip: bool, steps: int, batch: int, lr: float, width: int,
            depth: int, tt_weight: float, angle_weight: float, norm_weight: float, truncation_psi: float,
            seed: int, device: str | None, force: bool) -> None:
    """Train a hyper-network that maps a text prompt to a domain vector of CHECKPOINT's generator.

    The generator stays frozen: a domain vector only rescales the style of every conv layer,
    so each domain costs one vector (about 6k numbers at 1024 px) and the hyper-network
    predicts it from the CLIP embedding of any description, including ones it never saw.
    Training uses the directional CLIP loss of StyleGAN-NADA with a target-target direction
    loss, the in-domain angle consistency loss and a domain-norm penalty (HyperDomainNet).

    OUTPUT holds CHECKPOINT's tensors unchanged (domain vectors included), the hyper-network
    as hyper.* tensors, and one domain per training prompt; sample and render take
    --prompt TEXT with it.

    \b
    Examples:
      printf 'a pencil sketch\\nan oil painting\\na pixar character\\n' > styles.txt
      gancraft hyper ffhq.pkl --prompts styles.txt --clip-weights ViT-B-32.pt -o ffhq-hyper.st
      gancraft hyper ffhq.pkl --prompts styles.txt --source-prompt "a photo of a face" \\
          --steps 5000 --batch 16 --download-clip -o ffhq-hyper.st
    """
    from ..checkpoint import load, save
    from ..io_util import check_output_path
    from ..metrics import clip as clip_mod
    from ..train import hyper as hyper_mod

    prompts = hyper_mod.read_prompts(prompts_file)
    settings = hyper_mod.HyperSettings(steps=steps, batch=batch, lr=lr, seed=seed, source_prompt=source_prompt,
                                       width=width, depth=depth, tt_weight=tt_weight, angle_weight=angle_weight,
                                       norm_weight=norm_weight, truncation_psi=truncation_psi).validate()
    hyper_mod.check_prompts(prompts, source_prompt, where=prompts_file)
    check_output_path(output, force=force, inputs=(checkpoint, prompts_file))
    dev = resolve_device(device)
    parent = load(checkpoint)
    hyper_mod.check_generator(parent)
    clip = clip_mod.load_clip(clip_model, weights=clip_weights, device=dev, download=download_clip)
    log(f"hyper: {len(prompts)} prompts, {hyper_mod.parameters_per_domain(parent):,} parameters per domain, "
        f"CLIP {clip.description}")
    result = hyper_mod.train_hyper(parent, prompts, clip, settings, device=dev, progress=True,
                                   clip_model=clip_model)
    n_hyper = sum(p.numel() for p in result.hyper.parameters())
    final = result.log[-1]
    log(f"hyper: hyper-network {n_hyper:,} parameters; last step direction {final['direction']:.4f}, "
        f"tt-direction {final['tt_direction']:.4f}, in-domain angle {final['in_domain_angle']:.5f}")
    ckpt = hyper_mod.hyper_checkpoint(parent, result, {"checkpoint": checkpoint, "prompts_file": prompts_file,
                                                       "clip_model": clip_model, "clip": clip.name},
                                      inputs=[checkpoint, prompts_file])
    emit_path(save(ckpt, output, force=force, inputs=(checkpoint, prompts_file)))
