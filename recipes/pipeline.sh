#!/usr/bin/env bash
# A merge pipeline that keeps no intermediate files: checkpoints and directions travel through
# pipes ('-' is stdin/stdout), and written paths are captured with $(...).
#
#   recipes/pipeline.sh A.st B.st C.st OUT_DIR
#
# averages A and B, puts C's fine layers on the average (blend-layers' default switch), then
# writes a direction-walk video and a few samples of the result into OUT_DIR.
# GANCRAFT names the command to run (default: gancraft).
set -euo pipefail   # pipefail: a failed step fails the pipe, and nothing half-made is kept

a=${1:?usage: pipeline.sh A B C OUT_DIR}; b=${2:?}; c=${3:?}; out=${4:?}
gc=${GANCRAFT:-gancraft}
mkdir -p "$out"

# average -> blend: the average never touches the disk; blend-layers prints the path it wrote
blended=$($gc average "$a" "$b" -o - | $gc blend-layers --low - --high "$c" -o "$out/blend.st" --force)

# SeFA directions straight into render, which walks along the first one (and prints the video's path)
$gc sefa "$blended" -o - | $gc render "$blended" --direction -:0 --frames 8 -o "$out/walk.gif" --force

# a few samples, whose paths follow the video's on stdout
$gc sample "$blended" --seeds 0-3 -o "$out/samples" --force
