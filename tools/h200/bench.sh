#!/usr/bin/env bash
# Issue 11's GPU figures in one run (< 150 s): OUT=/dir bash tools/h200/bench.sh [bench_h200.py options]
# Dry run without a GPU: OUT=/tmp/h200 PYTHON=.venv/bin/python bash tools/h200/bench.sh --device cpu
# Never aborts on one failing part; writes $OUT/bench_h200.json and $OUT/bench_h200.log.
set -u
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-$PWD/h200_out}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Carried wheels (tools/h200/wheels.sh puts rosbags and its needs into .whl/): for reading the
# fixture bags. Only for the interpreter they were built for; a failed install is not fatal.
if ls .whl/*.whl >/dev/null 2>&1; then
    if "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/mde_site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/mde_site" \
            || echo "carried wheels did not install: the accuracy part re-renders the fixture frames"
    else
        echo "carried wheels are for Python 3.12, not $("$PYTHON" -V 2>&1): not installed"
    fi
fi
timeout -k 5 170 "$PYTHON" tools/h200/bench_h200.py --out "$OUT" "$@" 2>&1 | tee "$OUT/bench_h200.log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || echo "bench_h200.py exited with $status (124: timed out); see $OUT/bench_h200.json"
exit "$status"
