#!/usr/bin/env bash
# Local counterpart of tools/h200/train.sh (see tools/h200/README.md):
#   bash tools/h200/export.sh RESULTS_DIR models/NAME
# RESULTS_DIR holds what the GPU job left in $OUT (model.part0..N, train_report.tgz). Joins the parts into a
# checkpoint (checked against the SHA-256 in the report), then exports NAME.pt, NAME.onnx (opset 17, fp16-stored
# weights, fp32 I/O, input "image", output "depth", dynamic N/H/W, verified against torch on the CPU) and
# NAME.card.json with the job's commands, GPU time, data and held-out synthetic metrics.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash tools/h200/export.sh RESULTS_DIR models/NAME" >&2
  exit 2
fi
RESULTS="$(cd "$1" && pwd)"
STEM="$2"
PYTHON="${PYTHON:-python3}"
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
REPORT="$RESULTS/report"
mkdir -p "$REPORT"
tar -xzf "$RESULTS/train_report.tgz" -C "$REPORT"
"$PYTHON" -m training.weights_io unpack "$RESULTS" --manifest "$REPORT/model.parts.json" --out "$RESULTS/gpu_best.pt"
NOTES="$("$PYTHON" tools/h200/card_notes.py "$REPORT")"
METRICS=()
if [ -f "$REPORT/heldout.json" ]; then METRICS=(--metrics-json "$REPORT/heldout.json"); fi
"$PYTHON" -m training.export_model "$RESULTS/gpu_best.pt" --out "$STEM" --fp16-weights --name "$(basename "$STEM")" \
    --notes "$NOTES" "${METRICS[@]}"
