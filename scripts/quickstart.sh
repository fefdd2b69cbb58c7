#!/usr/bin/env bash
# The pipeline end to end on a generated WebVision-format example (safe to run twice):
#   data/example          the example release (python -m pipeline example)
#   data/example_mined    text mining: keywords, label weights, report (python -m text_mining run)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
if [ ! -f data/example/README.txt ]; then
  rm -rf data/example
  "$PY" -m pipeline example --out data/example --classes 10 --images-per-class 24 --seed 0
fi
"$PY" -m text_mining run --webvision data/example --out data/example_mined \
  --config configs/text_mining/example.yaml --workers "${WORKERS:-2}"
echo
cat data/example_mined/report.md
echo "Outputs: data/example_mined/{images,vocabulary,classes,keyword_classes}.parquet, report.md, keyword_frequency.png"
