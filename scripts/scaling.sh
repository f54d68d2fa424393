#!/usr/bin/env bash
# Scaling of the FFHQ-256 UNet forward on this machine: 1 vs 2 threads, image sizes 64/128/256,
# batch 1 and 4 (random weights, f32, median of REPS calls after a warm-up). Prints ms per call,
# ms per image, GFLOP/s and the 2-thread speed-up.
#
# usage: scripts/scaling.sh [REPS] [EXTRA bench ARGS...]   e.g. scripts/scaling.sh 3 --backward
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-3}
shift || true
cargo build --release -q -p diffinv-cli
D=target/release/diffinv
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; ffhq256 config $*"
printf "%6s %6s | %10s %9s %8s | %10s %9s %8s | %8s\n" size batch "1T ms" "ms/img" "GFLOP/s" "2T ms" "ms/img" "GFLOP/s" "speed-up"
for s in 64 128 256; do
  for b in 1 4; do
    one=$($D --json --threads 1 bench unet --config ffhq256 --size "$s" --batch "$b" --reps "$R" "$@")
    two=$($D --json --threads 2 bench unet --config ffhq256 --size "$s" --batch "$b" --reps "$R" "$@")
    m1=$(field "$one" ms); m2=$(field "$two" ms)
    printf "%6s %6s | %10.1f %9.1f %8.1f | %10.1f %9.1f %8.1f | %8.2f\n" "$s" "$b" \
      "$m1" "$(python3 -c "print($m1/$b)")" "$(field "$one" gflops)" \
      "$m2" "$(python3 -c "print($m2/$b)")" "$(field "$two" gflops)" "$(python3 -c "print($m1/$m2)")"
  done
done
