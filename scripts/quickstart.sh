#!/usr/bin/env bash
# The pipeline end to end on a generated WebVision-format example (safe to run twice):
#   data/example          the example release (python -m pipeline example)
#   data/example_mined    text mining: keywords, label weights, report (python -m text_mining run)
#   data/example_shards   WebDataset shards of train and val (python -m pipeline shard), then one
#                         epoch of the streaming loader over them
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
"$PY" -m pipeline shard --webvision data/example --labels data/example_mined --out data/example_shards \
  --max-size 300KB --workers "${WORKERS:-2}"
"$PY" -m pipeline loader-check --shards data/example_shards/train --batch-size 32 --workers 2 --sampling class
echo
cat data/example_mined/report.md
echo "Outputs: data/example_mined/{images,vocabulary,classes,keyword_classes}.parquet, report.md, keyword_frequency.png"
echo "         data/example_shards/{train,val}/*.tar with manifest.parquet, sizes.json, report.json"
