"""Write the StyleGAN3 golden files of tests/test_stylegan3.py (run from the repository root).

    python tests/reference/make_stylegan3_golden.py --nvidia-src /path/to/stylegan3

Two tiny generators (configs T and R, 16 px) get seeded random weights, every parameter and
buffer moved off its initial value so that no layer is an identity, and are saved as native
checkpoints; their images for fixed latents (plain, truncated, and translated and rotated as
gen_images.py does) are saved next to them. The images are gancraft's, and they are written
only after NVIDIA's stylegan3 code, given the same weights, has produced the same images to
1e-4: the golden test then holds gancraft to NVIDIA's numerics where no checkout is present.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gancraft import save  # noqa: E402
from gancraft.checkpoint.core import Checkpoint  # noqa: E402
from gancraft.nets.stylegan3 import Generator, StyleGAN3Config, input_transform  # noqa: E402

OUT = ROOT / "tests" / "reference"
CONFIGS = {
    "t16": dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256, channel_max=8),
    "r16": dict(
        z_dim=8,
        c_dim=2,
        w_dim=8,
        img_resolution=16,
        img_channels=3,
        channel_base=512,
        channel_max=8,
        conv_kernel=1,
        use_radial_filters=True,
    ),
}
PLACE = ((0.25, -0.1), 30.0)  # translate, rotate (degrees)


def golden_generator(name: str) -> Generator:
    torch.manual_seed(sorted(CONFIGS).index(name))
    G = Generator(StyleGAN3Config(**CONFIGS[name])).eval()
    with torch.no_grad():
        for _, p in G.named_parameters():
            p.add_(torch.randn_like(p) * 0.3)
        for key, b in G.named_buffers():
            if key.endswith("magnitude_ema"):
                b.fill_(float(torch.rand([])) + 0.5)
            elif key.endswith("w_avg"):
                b.normal_()
    return G


def images(G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor | None) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = {"plain": G(z, c), "psi0.7": G(z, c, truncation_psi=0.7)}
        G.synthesis.input.transform.copy_(input_transform(*PLACE))
        out["placed"] = G(z, c)
        G.synthesis.input.transform.copy_(torch.eye(3))
    return out


def latents(name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    cfg = CONFIGS[name]
    gen = torch.Generator().manual_seed(100)
    z = torch.randn([3, cfg["z_dim"]], generator=gen)
    c = torch.nn.functional.one_hot(torch.arange(3) % cfg["c_dim"], cfg["c_dim"]).float() if cfg["c_dim"] else None
    return z, c


def nvidia_images(src: str, G: Generator, name: str, z: torch.Tensor, c: torch.Tensor | None) -> dict:
    sys.path.insert(0, str(Path(src).resolve()))
    import training.networks_stylegan3 as nv

    ref = nv.Generator(**CONFIGS[name]).eval()
    ref.load_state_dict(G.state_dict())
    with torch.no_grad():
        out = {"plain": ref(z, c), "psi0.7": ref(z, c, truncation_psi=0.7)}
        # gen_images.py's own construction: the inverse of its make_transform matrix
        (tx, ty), angle = PLACE
        a = np.radians(angle)
        m = np.array([[np.cos(a), np.sin(a), tx], [-np.sin(a), np.cos(a), ty], [0, 0, 1]])
        ref.synthesis.input.transform.copy_(torch.from_numpy(np.linalg.inv(m)))
        out["placed"] = ref(z, c)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nvidia-src", required=True, help="a stylegan3 checkout")
    args = parser.parse_args()
    tensors = {}
    for name in CONFIGS:
        G = golden_generator(name)
        z, c = latents(name)
        ours, theirs = images(G, z, c), nvidia_images(args.nvidia_src, G, name, z, c)
        for kind in ours:
            diff = (ours[kind] - theirs[kind]).abs().max().item()
            print(f"{name} {kind}: max |gancraft - NVIDIA| = {diff:.3g}, image range {ours[kind].abs().max():.3g}")
            if diff > 1e-4:
                raise SystemExit(f"{name} {kind}: gancraft differs from NVIDIA by {diff}; golden files not written")
            tensors[f"{name}.{kind}"] = ours[kind].contiguous()
        tensors[f"{name}.z"] = z
        save(Checkpoint.from_modules(G_ema=G), OUT / f"stylegan3_{name}.st", force=True)
    save_file(tensors, str(OUT / "stylegan3_golden.safetensors"))


if __name__ == "__main__":
    main()
