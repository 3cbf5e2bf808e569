"""Concurrent jobs: two `gancraft train` processes side by side, as `make -j2` or `xargs -P 2` run them.

    python benchmarks/bench_concurrent.py [--jobs 1,2] [--rounds 3] [--steps 20] [--json PATH]

Each setting starts JOBS identical `gancraft train --config tiny --resolution 32` processes at
once and reads every job's step times from its log.jsonl (start-up and snapshots excluded). A
job's speed is the inverse of its median step time; the throughput of a setting is the sum over
its jobs. Settings:

- `spin`: GANCRAFT_OMP=spin, the OpenMP runtime's own default (idle threads spin), which is what
  the command line did before it set a wait policy;
- `default`: the command line as shipped (gancraft.runtime.configure_openmp);
- `threads1`: OMP_NUM_THREADS=1 in every job, the usual manual remedy.

Settings are interleaved round by round so that load from other processes hits them alike, and
each reports its best round. The ratio of interest is `default` against `spin` at 2 jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from gancraft import toy

SETTINGS: dict[str, dict[str, str]] = {
    "spin": {"GANCRAFT_OMP": "spin"},
    "default": {},
    "threads1": {"OMP_NUM_THREADS": "1"},
}
# variables that would override what a setting is meant to show
_CLEARED = ("GANCRAFT_OMP", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS")


def run_jobs(setting: str, jobs: int, steps: int, data: Path, work: Path) -> list[float]:
    """Start `jobs` training processes at once; each one's median seconds per step."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(SETTINGS[setting])
    kimg = steps * 16 / 1000
    procs, runs = [], []
    for j in range(jobs):
        run = work / f"{setting}-{jobs}-{j}"
        cmd = [
            sys.executable,
            "-m",
            "gancraft",
            "train",
            str(data),
            "-o",
            str(run) + ".st",
            "--resolution",
            "32",
            "--config",
            "tiny",
            "--batch",
            "16",
            "--kimg",
            str(kimg),
            "--snap",
            "1000",
            "--seed",
            str(j),
            "--run-dir",
            str(run),
            "--quiet",
            "--device",
            "cpu",
            "--force",
        ]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        runs.append(run)
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a {setting} job failed (exit {p.returncode}): {err.strip()}")
    medians = []
    for run in runs:
        secs = [json.loads(line)["sec"] for line in (run / "log.jsonl").read_text().splitlines()]
        medians.append(statistics.median(b - a for a, b in zip(secs, secs[1:])))
        for p in run.iterdir():
            p.unlink()
        run.rmdir()
        Path(str(run) + ".st").unlink()
    return medians


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", default="1,2", help="comma-separated numbers of concurrent jobs")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    settings = args.settings.split(",")
    for s in settings:
        if s not in SETTINGS:
            raise SystemExit(f"--settings: unknown setting {s!r} (choose from {', '.join(SETTINGS)})")
    jobs_list = [int(j) for j in args.jobs.split(",")]
    print(
        f"command: python benchmarks/bench_concurrent.py --jobs {args.jobs} --settings {args.settings} "
        f"--rounds {args.rounds} --steps {args.steps}"
    )
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    best: dict[tuple[int, str], float] = {}
    rounds: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = toy.write_dataset("face", 64, 0, 32, tmp / "data")
        for r in range(args.rounds):
            for jobs in jobs_list:
                for s in settings:
                    medians = run_jobs(s, jobs, args.steps, data, tmp)
                    rate = sum(1 / m for m in medians)  # steps per second over all jobs
                    rounds.setdefault(f"{s}/{jobs}", []).append(rate)
                    best[jobs, s] = max(best.get((jobs, s), 0.0), rate)
                    print(
                        f"round {r + 1} {jobs} job(s) {s:>8}: "
                        + ", ".join(f"{m:.3f}" for m in medians)
                        + f" s/step each, {rate:.2f} steps/s in all",
                        flush=True,
                    )
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = []
    for jobs in jobs_list:
        for s in settings:
            rate = best[jobs, s]
            ratio = rate / best[jobs, "spin"] if "spin" in settings else None
            results.append({"jobs": jobs, "setting": s, "steps_per_s": rate, "vs_spin": ratio})
            print(
                f"best: {jobs} job(s) {s:>8}: {rate:.2f} steps/s in all, {jobs / rate:.3f} s/step per job"
                + (f", {ratio:.2f}x spin" if ratio else "")
            )
    if args.json:
        args.json.write_text(json.dumps({"concurrent": results, "rounds": rounds}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
