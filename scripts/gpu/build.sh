#!/usr/bin/env bash
# Builds the CUDA test and benchmark binaries on a machine with a Rust toolchain (no GPU or CUDA
# needed: cudarc loads the libraries at run time) into gpu-bundle/, for scripts/gpu/run.sh on a
# GPU machine that has the NVIDIA driver and CUDA 13 libraries but no Rust.
#   scripts/gpu/build.sh            # then copy the repo (with gpu-bundle/) to the GPU machine
set -euo pipefail
cd "$(dirname "$0")/../.."
out=gpu-bundle
rm -rf "$out" && mkdir -p "$out/tests"
cargo build --release -p diffinv-cli --features cuda
cp target/release/diffinv "$out/diffinv"
for spec in "--features cuda --test cuda" "-p diffinv-cuda-sys --features cuda --test kernels"; do
  # shellcheck disable=SC2086
  bin=$(cargo test --release $spec --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])' | tail -1)
  cp "$bin" "$out/tests/$(basename "$bin" | sed 's/-[0-9a-f]*$//')"
done
strip "$out/diffinv" "$out"/tests/*
# The test binaries read tests/data and assets/ through the path they were built at.
pwd > "$out/SOURCE_DIR"
ls -la "$out" "$out/tests"
