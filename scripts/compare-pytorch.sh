#!/usr/bin/env bash
# diffinv against PyTorch (and ONNX Runtime when it installs) on the FFHQ-256 DPS UNet, random
# weights, batch 1, on this machine, back to back: forward and forward + input gradient, f32 and
# bf16. Prints ms, GFLOP/s, peak RSS and the ratios.
#
# usage: scripts/compare-pytorch.sh [THREADS] [REPS]     (default 2 threads, 5 repetitions)
# PyTorch is installed into .venv with pip on first use (needs the package registry).
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-2}
R=${2:-5}
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q torch numpy
  .venv/bin/pip install -q onnxruntime onnx || echo "(onnxruntime not installed; skipping it)"
fi
cargo build --release -q -p diffinv-cli
D=target/release/diffinv
G=387.9
ours() { $D --json --threads "$T" bench unet --config ffhq256 --reps "$R" "$@"; }
torch_run() { .venv/bin/python scripts/reference/bench_torch.py "$1" --threads "$T" --reps "$R" 2>/dev/null | tail -1; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; threads $T; torch $(.venv/bin/python -c 'import torch; print(torch.__version__)')"
printf "%-28s %10s %10s %10s %12s\n" "mode" "ms" "GFLOP/s" "RSS MiB" "ours/theirs"
row() { # label ours_json theirs_json flop_mult
  local om tm orss trss
  om=$(field "$2" ms); orss=$(field "$2" peak_rss_mib)
  printf "%-28s %10.1f %10.1f %10.0f\n" "diffinv $1" "$om" "$(python3 -c "print($G*$4/($om/1000))")" "$orss"
  if [ -n "$3" ]; then
    tm=$(field "$3" ms); trss=$(field "$3" peak_rss_mib)
    printf "%-28s %10.1f %10.1f %10.0f %12.2f\n" "$5 $1" "$tm" "$(python3 -c "print($G*$4/($tm/1000))")" "$trss" "$(python3 -c "print($om/$tm)")"
  fi
}
row "forward f32" "$(ours)" "$(torch_run fwd)" 1 "pytorch"
row "forward+grad f32" "$(ours --backward)" "$(torch_run fwdbwd)" 2 "pytorch"
if $D bench unet --help | grep -q bf16 && grep -q avx512_bf16 /proc/cpuinfo; then
  row "forward bf16" "$(ours --dtype bf16)" "$(torch_run fwd_bf16)" 1 "pytorch"
  row "forward+grad bf16" "$(ours --backward --dtype bf16)" "$(torch_run fwdbwd_bf16)" 2 "pytorch"
fi
if .venv/bin/python -c "import onnxruntime" 2>/dev/null; then
  ORT=$(torch_run ort_fwd || true)
  if [ -n "$ORT" ]; then row "forward f32 (vs ORT)" "$(ours)" "$ORT" 1 "onnxruntime"; fi
fi
