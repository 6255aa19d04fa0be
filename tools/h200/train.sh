#!/usr/bin/env bash
# One-shot GPU job (see tools/h200/README.md):  OUT=/some/dir bash tools/h200/train.sh
# Benchmarks the data path and training, trains unet_resnet34 (320x320, 0-10 m) from scratch on the wider
# synthetic world for TRAIN_SECONDS of wall clock, scores held-out synthetic scenes, and leaves in $OUT only
# model.part0..N (fp16 weights, <= 15 MiB each) and train_report.tgz.
set -euo pipefail

: "${OUT:?set OUT=/dir for the results, e.g. OUT=/tmp/out bash tools/h200/train.sh}"
TRAIN_SECONDS="${TRAIN_SECONDS:-300}"
BENCH_SECONDS="${BENCH_SECONDS:-30}"
PYTHON="${PYTHON:-python3}"
cd "$(dirname "$0")/../.."                       # repository root
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/mde_h200_job.XXXXXX")}"
mkdir -p "$WORK/report"
LOG="$WORK/report/log.txt"
export MDE_JOB_COMMAND="OUT=$OUT TRAIN_SECONDS=$TRAIN_SECONDS BENCH_SECONDS=$BENCH_SECONDS bash tools/h200/train.sh $*"

{
  echo "== mde_ros GPU job $(date -u +%Y-%m-%dT%H:%M:%SZ) on ${HOSTNAME:-unknown host}"
  echo "command: $MDE_JOB_COMMAND"
  echo "work dir: $WORK   out: $OUT   git: $(git rev-parse HEAD 2>/dev/null || echo 'no git')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "nvidia-smi: not available"
  df -h /dev/shm "${TMPDIR:-/tmp}" 2>/dev/null || true
  "$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)' || true
} 2>&1 | tee "$LOG"

status=0
"$PYTHON" tools/h200/job.py --out "$OUT" --work "$WORK" --train-seconds "$TRAIN_SECONDS" \
    --bench-seconds "$BENCH_SECONDS" "$@" 2>&1 | tee -a "$LOG" || status=$?

# The job writes train_report.tgz itself; refresh it so it carries the complete log.
"$PYTHON" - "$WORK/report" "$OUT" <<'PY' || echo "could not refresh train_report.tgz"
import sys
from pathlib import Path
sys.path.insert(0, "tools/h200")
from job import write_report
write_report(Path(sys.argv[1]), Path(sys.argv[2]))
PY
echo "== done (status $status): $(ls "$OUT" | tr '\n' ' ')"
exit "$status"
