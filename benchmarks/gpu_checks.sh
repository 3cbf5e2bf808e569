#!/usr/bin/env bash
# Everything issue #21 asks of a GPU machine, in one command:
#
#     bash benchmarks/gpu_checks.sh NVIDIA_SRC [OUT_DIR]
#
# NVIDIA_SRC: a stylegan2-ada-pytorch or stylegan3 checkout (benchmarks/nvidia_reference/README.md);
# its CUDA kernels compile on first use. OUT_DIR (default gpu-checks/) receives the GPU model, the
# test logs and one JSON per benchmark; the script keeps going after a failure and exits non-zero
# if anything failed, so one run gives every figure it can.
#
#  1. tests/test_cuda.py: fp32 images on CUDA equal the CPU's (with TF32 left on by the caller),
#     mixed/bf16 run, every training method trains 3 steps under bf16 autocast, SeFA on CUDA;
#  2. the whole suite with CUDA present (commands without --device then run on the GPU);
#  3. bench_vs_nvidia.py at 256 and 1024 px, batch 1 and 32, fp32 and mixed (goal >= 1.0x);
#  4. bench_train.py on CUDA (the stylegan2 config at 256 px, batch 32).
set -u
src=${1:?usage: bash benchmarks/gpu_checks.sh NVIDIA_SRC [OUT_DIR]}
out=${2:-gpu-checks}
mkdir -p "$out"
status=0
step() {  # step NAME COMMAND...: run, log to OUT/NAME.log, remember failures
    local name=$1; shift
    echo "== $name: $*" | tee "$out/$name.log"
    "$@" 2>&1 | tee -a "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "== $name FAILED (exit $rc)"; status=1; }
}

{ nvidia-smi -L; python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; } \
    | tee "$out/gpu.txt"
export GANCRAFT_NVIDIA_SRC=$src
step cuda-tests python -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_devices.py
step suite python -m pytest -q -p no:cacheprovider
for res in 256 1024; do
    for batch in 1 32; do
        for precision in fp32 mixed; do
            step "vs-nvidia-$res-$batch-$precision" python benchmarks/bench_vs_nvidia.py --nvidia-src "$src" \
                --device cuda --resolution "$res" --batch "$batch" --precision "$precision" --repeats 10 \
                --json "$out/vs-nvidia-$res-$batch-$precision.json"
        done
    done
done
step train-256 python benchmarks/bench_train.py --device cuda --configs stylegan2 --resolution 256 --steps 48 \
    --json "$out/train-256.json"
exit $status
