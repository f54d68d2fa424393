#!/usr/bin/env bash
# diffinv against PyTorch (and ONNX Runtime when it installs) on the FFHQ-256 DPS UNet (or
# guided-diffusion's ImageNet-256 UNet: PRESET imagenet256), random weights, batch 1, on this
# machine, back to back: forward and forward + input gradient, f32 and bf16. Prints ms, GFLOP/s,
# peak RSS and the ratios.
#
# usage: scripts/compare-pytorch.sh [THREADS] [REPS] [PRESET] [WARMUP]
#        (default 2 threads, 5 repetitions, ffhq256, 2 PyTorch warm-up calls)
# PyTorch is installed into .venv with pip on first use (needs the package registry), unless
# PYTHON names an interpreter that has it.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-2}
R=${2:-5}
P=${3:-ffhq256}
W=${4:-2}
PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install -q torch numpy
  .venv/bin/pip install -q onnxruntime onnx || echo "(onnxruntime not installed; skipping it)"
fi
cargo build --release -q -p diffinv-cli
D=target/release/diffinv
ours() { $D --json --threads "$T" bench unet --config "$P" --reps "$R" "$@"; }
torch_run() { "$PY" scripts/reference/bench_torch.py "$1" --threads "$T" --reps "$R" --warmup "$W" --preset "$P" 2>/dev/null | tail -1; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; threads $T; $P; torch $("$PY" -c 'import torch; print(torch.__version__)')"
# Medians and minima of the same calls: on a shared (noisy) machine the minimum is the steadier
# estimate of what the code can do; both ratios are printed.
printf "%-34s %9s %9s %9s %8s %12s %12s\n" "mode" "median ms" "min ms" "GFLOP/s" "RSS MiB" "ratio (med)" "ratio (min)"
row() { # label ours_json theirs_json flop_mult theirs_name
  local om on tm tn
  om=$(field "$2" ms); on=$(field "$2" min_ms)
  printf "%-34s %9.1f %9.1f %9.1f %8.0f\n" "diffinv $1" "$om" "$on" "$(python3 -c "print($G*$4/($on/1000))")" "$(field "$2" peak_rss_mib)"
  if [ -n "$3" ]; then
    tm=$(field "$3" ms); tn=$(field "$3" min_ms)
    printf "%-34s %9.1f %9.1f %9.1f %8.0f %12.2f %12.2f\n" "$5 $1" "$tm" "$tn" "$(python3 -c "print($G*$4/($tn/1000))")" \
      "$(field "$3" peak_rss_mib)" "$(python3 -c "print($om/$tm)")" "$(python3 -c "print($on/$tn)")"
  fi
}
F=$(ours); FB=$(ours --backward)
G=$(field "$F" gflop)
row "forward f32" "$F" "$(torch_run fwd)" 1 "pytorch"
row "forward+grad f32" "$FB" "$(torch_run fwdbwd)" 2 "pytorch"
if $D bench unet --help | grep -q bf16 && grep -q avx512_bf16 /proc/cpuinfo; then
  H=$(ours --dtype bf16); HB=$(ours --backward --dtype bf16)
  row "forward bf16" "$H" "$(torch_run fwd_bf16)" 1 "pytorch"
  row "forward+grad bf16" "$HB" "$(torch_run fwdbwd_bf16)" 2 "pytorch"
  echo "diffinv bf16 speed-up over f32 (min): forward $(python3 -c "print(round($(field "$F" min_ms)/$(field "$H" min_ms), 2))")x," \
    "forward+grad $(python3 -c "print(round($(field "$FB" min_ms)/$(field "$HB" min_ms), 2))")x"
fi
if [ "$P" = ffhq256 ] && "$PY" -c "import onnxruntime" 2>/dev/null; then
  ORT=$(torch_run ort_fwd || true)
  if [ -n "$ORT" ]; then row "forward f32 (vs ORT)" "$(ours)" "$ORT" 1 "onnxruntime"; fi
fi
