#!/usr/bin/env bash
# Runs the CUDA tests and benchmarks built by scripts/gpu/build.sh on a GPU machine, from the
# repository root, and writes a report (gpu.txt, tests.log, bench.log) to $OUT (default
# gpu-report/). Needs the NVIDIA driver and CUDA 13's cuBLAS and NVRTC (cuDNN 9 optional): the
# CUDA toolkit's, or those of a PyTorch install (found through python3's `nvidia` packages); no
# Rust toolchain.
#   scripts/gpu/run.sh [all|tests|bench]
# Tests run twice: with the default convolutions (im2col + cuBLAS) and with DIFFINV_CUDNN=1 (read
# by the test binary only; the CLI takes --cudnn). `bench unet --profile` adds GPU time per kernel.
set -uo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
out=${OUT:-gpu-report}
mkdir -p "$out"
libs=$(python3 - 2>/dev/null <<'PY'
import glob, os
try:
    import nvidia
    for p in nvidia.__path__:
        for d in sorted(glob.glob(os.path.join(p, "*", "lib"))):
            print(d)
except ImportError:
    pass
PY
)
for d in $libs /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export LD_LIBRARY_PATH DIFFINV_REQUIRE_GPU=1
# The test binaries find tests/data and assets through the path they were built at.
src=$(cat gpu-bundle/SOURCE_DIR 2>/dev/null)
if [ -n "$src" ] && [ ! -e "$src" ]; then mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"; fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
status=0
if [ "$what" != bench ]; then
  for t in gpu-bundle/tests/*; do
    echo "== $t" | tee -a "$out/tests.log"
    "$t" --test-threads 1 --nocapture 2>&1 | tee -a "$out/tests.log" || status=1
  done
  echo "== gpu-bundle/tests/cuda with DIFFINV_CUDNN=1" | tee -a "$out/tests.log"
  DIFFINV_CUDNN=1 gpu-bundle/tests/cuda --test-threads 1 --nocapture 2>&1 | tee -a "$out/tests.log" || status=1
fi
if [ "$what" != tests ]; then
  b=gpu-bundle/diffinv
  {
    for cudnn in "" 1; do
      for dt in f32 tf32; do
        flag=$([ "$cudnn" = 1 ] && echo --cudnn || true)
        $b bench unet --config ffhq256 --device cuda --dtype "$dt" --reps 20 $flag
        $b bench unet --config ffhq256 --device cuda --dtype "$dt" --reps 20 --backward $flag
      done
    done
    $b bench unet --config ffhq256 --device cuda --batch 4 --reps 10
    $b bench unet --config celeba64 --device cuda --reps 50 --backward
    $b bench unet --config ffhq256 --device cuda --reps 1 --backward --profile
    python3 scripts/reference/bench_unet.py --device cuda --reps 20 --modes fwd,fwdbwd
    python3 scripts/reference/bench_unet.py --device cuda --reps 20 --modes fwd,fwdbwd --no-tf32
    $b -q bench dps --config ffhq256 --steps "${DPS_STEPS:-1000}" --device cuda
    $b -q bench dps --config ffhq256 --steps "${DPS_STEPS:-1000}" --device cuda --tf32
  } 2>&1 | tee -a "$out/bench.log"
fi
exit $status
