"""Write tests/reference/ada_golden.safetensors, the augmented images of tests/test_ada.py
(run from the repository root).

    python tests/reference/make_ada_golden.py --nvidia-src /path/to/stylegan2-ada-pytorch

Fixed images go through gancraft's ADA pipeline: whole pipelines at a fixed seed and p (the
random draws included), and single operations with their parameter forced. The images are
gancraft's, written only after NVIDIA's AugmentPipe (same seed, or its debug_percentile for the
forced cases) has produced the same ones to 1e-4: the golden test then holds gancraft to NVIDIA's
augmentation where no checkout is present.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from unittest import mock

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gancraft.train import ada  # noqa: E402

OUT = ROOT / "tests" / "reference" / "ada_golden.safetensors"
SEED = 5
# name -> (pipeline, p, channels); p above 1 switches every operation on and caps the rotations
PIPELINE_CASES = {
    "bgc": ("bgc", 0.7, 3),
    "bgc_grey": ("bgc", 0.7, 1),
    "bg_p1.2": ("bg", 1.2, 3),
    "color": ("color", 0.5, 3),
}
# name -> (operation, the value of every uniform draw): 0.75 flips, 0.3 turns by 90 degrees once
FORCED_CASES = {"xflip": ("xflip", 0.75), "rotate90": ("rotate90", 0.3)}


def images(channels: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(channels)
    return torch.randn([3, channels, 16, 16], generator=gen)


def pipeline_output(name: str) -> torch.Tensor:
    pipeline, p, channels = PIPELINE_CASES[name]
    x = images(channels)
    torch.manual_seed(SEED)
    return ada.AugmentPipe(pipeline)(x, p)


def forced_output(name: str) -> torch.Tensor:
    op, u = FORCED_CASES[name]
    x = images(3)
    with mock.patch.object(ada, "_uniform", lambda shape, device: torch.full(shape, u, device=device)):
        return ada.warp(x, ada.sample_geometry(x.shape[0], (op,), 1.0, (16, 16), x.device))


def nvidia_outputs(src: str) -> dict[str, torch.Tensor]:
    sys.path.insert(0, str(Path(src).resolve()))
    from training.augment import AugmentPipe

    out = {}
    for name, (pipeline, p, channels) in PIPELINE_CASES.items():
        pipe = AugmentPipe(**{op: 1 for op in ada.PIPELINES[pipeline]})
        pipe.p.fill_(p)
        torch.manual_seed(SEED)
        out[name] = pipe(images(channels))
    for name, (op, u) in FORCED_CASES.items():
        out[name] = AugmentPipe(**{op: 1})(images(3), debug_percentile=u)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nvidia-src", required=True, help="a stylegan2-ada-pytorch (or stylegan3) checkout")
    args = parser.parse_args()
    theirs = nvidia_outputs(args.nvidia_src)
    ours = {name: pipeline_output(name) for name in PIPELINE_CASES}
    ours.update({name: forced_output(name) for name in FORCED_CASES})
    for name, img in ours.items():
        diff = (img - theirs[name]).abs().max().item()
        print(f"{name}: max |gancraft - NVIDIA| = {diff:.3g}, image range {img.abs().max():.3g}")
        if diff > 1e-4:
            raise SystemExit(f"{name}: gancraft differs from NVIDIA by {diff}; golden file not written")
    save_file({k: v.contiguous() for k, v in ours.items()}, str(OUT))


if __name__ == "__main__":
    main()
