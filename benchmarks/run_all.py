"""Run every benchmark in this folder and collect their JSON results in one file.

    python benchmarks/run_all.py --json out/bench.json [--only sample,merge]

Each bench_*.py prints its own figures with the command that reproduces it; this driver adds
the machine description and gathers the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="write all results here")
    ap.add_argument("--only", default="", help="comma-separated names (generator, sample, merge, fid, ...)")
    ap.add_argument(
        "--nvidia-src",
        default=None,
        help="folder with NVIDIA's reference code for bench_vs_nvidia (see nvidia_reference/README.md); "
        "without it that comparison is skipped",
    )
    args = ap.parse_args()
    only = {x for x in args.only.split(",") if x}
    results = {"machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M:%S"), "benchmarks": {}}
    print(f"machine: {results['machine']}", flush=True)
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem[len("bench_") :]
        if only and name not in only:
            continue
        extra = []
        if name in ("vs_nvidia", "train_vs_nvidia"):
            if not args.nvidia_src:
                print(f"\n== {name}: skipped (pass --nvidia-src DIR)", flush=True)
                continue
            extra = ["--nvidia-src", args.nvidia_src]
        print(f"\n== {name}: python benchmarks/{script.name} {' '.join(extra)}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.json"
            rc = subprocess.call([sys.executable, str(script), "--json", str(out), *extra])
            entry = json.loads(out.read_text()) if out.exists() else {}
            results["benchmarks"][name] = {"exit_code": rc, "results": entry}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
