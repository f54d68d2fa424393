#!/usr/bin/env bash
# Soak test: 50 images (45 faces, 5 broken or wrong files) through every method once, as folder
# runs; reports what succeeded, what was refused (and why), and each run's peak memory.
# usage: scripts/soak.sh [WORKDIR]   (default /tmp/diffinv-soak; diffusion methods use --steps 20)
set -uo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/diffinv-soak}
rm -rf "$W"; mkdir -p "$W/in"
cargo build --release -q -p diffinv-cli
D=$PWD/target/release/diffinv
faces=(tests/data/celeba64/*.png assets/samples/*.png)
for i in $(seq 0 44); do cp "${faces[$((i % ${#faces[@]}))]}" "$W/in/face_$(printf %02d $i).png"; done
head -c 3000 tests/data/celeba64/009501.png > "$W/in/bad_truncated.png"
echo "not an image" > "$W/in/bad_text.png"
: > "$W/in/bad_empty.png"
head -c 5000 /dev/urandom > "$W/in/bad_garbage.jpg"
cp tests/data/images/ffhq256/00000.png "$W/in/bad_wrong_size.png"
printf "%-10s %-15s %4s %4s %8s %9s\n" method task ok fail seconds peak_MiB
for m in dps ald sdedit diffpir adam-tv hqs-tv admm-tv hqs-dncnn; do
  task=inpaint-box; [ "$m" = hqs-dncnn ] && task=deblur-gauss
  steps=(); case $m in dps|ald|diffpir) steps=(--steps 20);; sdedit) steps=(--steps 20 --t0 500);; esac
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$W/$m.mem" "$D" --json --quiet restore --task $task --method $m "${steps[@]}" --from-clean "$W/in" -o "$W/out_$m" > "$W/$m.json" 2> "$W/$m.err"
  secs=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
  python3 - "$m" "$task" "$W" "$secs" <<'PY'
import json, sys
m, task, w, secs = sys.argv[1:]
d = json.load(open(f"{w}/{m}.json"))
mem = int(open(f"{w}/{m}.mem").read().split()[-1]) / 1024
print(f"{m:10s} {task:15s} {d['ok']:4d} {d['errors']:4d} {secs:>8s} {mem:9.0f}")
for f in d["failed"]:
    print(f"    refused {f['input'].split('/')[-1]}: {f['error'].split(': ', 1)[-1]}")
PY
done
