#!/usr/bin/env bash
# The paper-shaped example models (issue #16): 30,000 renders per toy domain (training uses the
# first 21,000 of each), then `gancraft train --config toy` (z and w of 512, 8 mapping layers at
# lr multiplier 0.01, 64 channels, 32 px, path-length regularisation as NVIDIA's StyleGAN2) with
# R1 gamma 0.5.
# Runs are resumable: run this script again after a stop and each run continues from its newest
# snapshot; KIMG=N sets a new total length for runs that already exist.
#
#   bash examples/train_examples.sh [WORK_DIR]      (default: ./example-runs)
#   DEVICE=cuda bash examples/train_examples.sh     (on a GPU)
set -euo pipefail
WORK=${1:-example-runs}
KIMG=${KIMG:-70}        # the bundled files: 70 kimg
GAMMA=${GAMMA:-0.5}      # R1 weight; NVIDIA's heuristic (0.0128 here) lost sample diversity, see README.md
N=${N:-30000}            # renders per domain
SUBSET=${SUBSET:-21000}  # of which training uses the first SUBSET
PY=${PYTHON:-python}
mkdir -p "$WORK"
seed=0
for d in face cat dog; do
  if [ ! -f "$WORK/data/$d/factors.csv" ]; then
    $PY -m gancraft.toy "$d" "$N" --seed "$seed" -o "$WORK/data/$d" --force >/dev/null
  fi
  seed=$((seed + 1))
done
for d in face cat dog; do
  if [ -f "$WORK/$d-run/run.json" ]; then
    args=(--resume "$WORK/$d-run" --kimg "$KIMG" --force)  # replaces the output of an earlier finish
  else
    args=(--kimg "$KIMG" --snap 5 --seed 0 --gamma "$GAMMA")
  fi
  # one thread each: three small runs side by side use two cores better than one run with two
  OMP_NUM_THREADS=1 $PY -m gancraft train "$WORK/data/$d" --subset "$SUBSET" -o "$WORK/$d.st" --resolution 32 \
    --config toy --quiet ${DEVICE:+--device "$DEVICE"} "${args[@]}" &
done
wait
