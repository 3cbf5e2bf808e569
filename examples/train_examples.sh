#!/usr/bin/env bash
# The paper-shaped example models (issue #16): 30,000 renders per toy domain (training uses the
# first 21,000 of each), then `gancraft train --config toy` (z and w of 512, 8 mapping layers at
# lr multiplier 0.01, 64 channels, 32 px, path-length regularisation as NVIDIA's StyleGAN2) with
# R1 gamma 0.5 up to 250 kimg, then gamma 0.05 (a change made on resume, which run.json and the
# model's history record) up to 290 kimg.
# Runs are resumable: run this script again after a stop and each run continues from its newest
# snapshot, in whichever phase it stopped; KIMG=N sets a new total length for runs that exist.
#
#   bash examples/train_examples.sh [WORK_DIR]      (default: ./example-runs)
#   DEVICE=cuda bash examples/train_examples.sh     (on a GPU)
set -euo pipefail
WORK=${1:-example-runs}
KIMG=${KIMG:-290}        # the bundled files: 290 kimg
SWITCH=${SWITCH:-250}    # R1 gamma GAMMA until SWITCH kimg, GAMMA2 after
GAMMA=${GAMMA:-0.5}      # NVIDIA's heuristic (0.0128 here) lost sample diversity early on, see README.md
GAMMA2=${GAMMA2:-0.05}   # once the modes are open: sharper details (mouths), lower FID
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

# kimg done by the run in $1 (its newest complete snapshot; 0 when there is none yet)
done_kimg() {
  $PY -c "import json, sys; from pathlib import Path; from gancraft.train.loop import latest_snapshot
run = Path(sys.argv[1]); found = latest_snapshot(run) if (run / 'run.json').exists() else None
print(found[0] * json.loads((run / 'run.json').read_text())['options']['batch'] / 1000 if found else 0)" "$1"
}
less() { awk "BEGIN { exit !($1 < $2) }"; }

train() {  # domain, then the options that start or continue its run
  OMP_NUM_THREADS=1 $PY -m gancraft train "$WORK/data/$1" --subset "$SUBSET" -o "$WORK/$1.st" --resolution 32 \
    --config toy --quiet ${DEVICE:+--device "$DEVICE"} --force "${@:2}"
}

one() {
  local d=$1 run="$WORK/$1-run" first=$SWITCH
  if less "$KIMG" "$SWITCH"; then first=$KIMG; fi
  if [ ! -f "$run/run.json" ]; then
    train "$d" --kimg "$first" --snap 5 --seed 0 --gamma "$GAMMA"
  elif less "$(done_kimg "$run")" "$first"; then
    train "$d" --resume "$run" --kimg "$first"
  fi
  if less "$SWITCH" "$KIMG"; then
    train "$d" --resume "$run" --kimg "$KIMG" --gamma "$GAMMA2"
  fi
}

# one thread each: three small runs side by side use two cores better than one run with two
for d in face cat dog; do
  one "$d" &
done
wait
