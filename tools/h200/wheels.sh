#!/usr/bin/env bash
# Fetch (here, where PyPI is reachable) the cp312 wheels that tools/h200/bench.sh installs on the GPU
# machine so it can read the fixture bags with rosbags (~6 MB): run once in the repo root.
set -eu
cd "$(dirname "$0")/../.."
mkdir -p .whl
for spec in rosbags==0.11.9 ruamel.yaml==0.19.1 lz4==4.4.5 apsw==3.54.1.0 backports.zstd==1.8.0; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "$spec"
done
ls -la .whl
