"""The hyper-compare table (recipes/Makefile): FID per row and extractor, trained G parameters, training time."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gancraft.checkpoint import load
from gancraft.errors import run_script

LABELS = {
    "face": "face model, untouched (start)",
    "dv-after": "domain vector, after demodulation (official code)",
    "dv-before": "domain vector, before demodulation (paper figure)",
    "full": "full fine-tuning (all of G)",
}
TARGETS = {
    "cat": ("cats", "the cat model (the target images' source)", "held-out cat renders"),
    "blend": (
        "the face-cat blend (face coarse layers, cat layers from 16 px)",
        "the blend model (the target images' source)",
        "the blend model's samples from seeds 100000 on",
    ),
}
EXTRACTORS = {"toy": "toy-domain FID", "quality": "damage-aware toy FID", "inception": "Inception FID"}


def fid(folder: Path, row: str, extractor: str) -> float:
    return json.loads((folder / f"fid-{row}-{extractor}.json").read_text())["rows"][0]["fid"]


def trained_g_parameters(folder: Path, row: str) -> int | None:
    """What the arm optimised on the generator side (D is trained in every arm)."""
    path = folder / f"{row}.st"
    if not path.exists():
        return None
    ckpt = load(path)
    vectors = [t for k, t in ckpt.tensors.items() if k.startswith("domain_vectors.")]
    if vectors:
        return sum(t.numel() for t in vectors)
    return sum(p.numel() for p in ckpt.generator().parameters())


def training_seconds(folder: Path, row: str) -> float | None:
    """Wall time from the run log; a resumed run restarts its clock, so each segment's last time adds up."""
    log = folder / f"{row}-run" / "log.jsonl"
    if not log.exists():
        return None
    total, last = 0.0, 0.0
    for line in log.read_text().splitlines():
        sec = json.loads(line).get("sec")
        if sec is None:
            continue
        if sec < last:
            total += last
        last = sec
    return total + last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--rows", required=True)
    ap.add_argument("--extractors", required=True)
    ap.add_argument("--target", required=True, choices=sorted(TARGETS))
    ap.add_argument("--kimg", required=True)
    ap.add_argument("--n", required=True)
    args = ap.parse_args()
    rows, extractors = args.rows.split(","), args.extractors.split(",")
    what, target_label, reference = TARGETS[args.target]
    labels = {**LABELS, args.target: target_label}
    print(
        f"Face model adapted to {what}, {args.kimg} kimg per arm; FID of {args.n} generated images against "
        f"{args.n} of {reference} (lower is better)"
    )
    print()
    print("| model | " + " | ".join(EXTRACTORS[x] for x in extractors) + " | G parameters trained | training s |")
    print("|---" * (len(extractors) + 3) + "|")
    for row in rows:
        given = row in ("face", args.target)  # the start and the target: nothing trained here
        params = None if given else trained_g_parameters(args.folder, row)
        secs = None if given else training_seconds(args.folder, row)
        cells = [f"{fid(args.folder, row, x):.1f}" for x in extractors]
        cells.append("-" if params is None else f"{params:,}")
        cells.append("-" if secs is None else f"{secs:.0f}")
        print(f"| {labels[row]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    run_script(main)
