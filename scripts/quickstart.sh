#!/usr/bin/env bash
# The pipeline end to end on a generated WebVision-format example (safe to run twice):
#   data/example          the example release (python -m webvision_example)
#   data/example_mined    text mining: keywords, label weights, report (python -m text_mining run)
#   data/example_shards   WebDataset shards of train and val (python -m pipeline shard), then one
#                         epoch of the streaming loader over them
#   runs/example-wt       WT-Set pretraining of a tiny model on them: 2 processes under Accelerate
#                         (gloo on CPU; one process per GPU where there are GPUs), checkpoints,
#                         metrics.csv, backbone.safetensors
#   runs/example-ft       finetuning from that backbone with a new head on the class labels, then
#                         evaluation of its best model on the val shards (top-1, top-5, per class),
#                         and its run report (runs/example-ft/report/index.html)
#   data/example_inspect  the inspection report of the mined labels (python -m text_mining inspect),
#                         whose path it prints last
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
if [ ! -f data/example/README.txt ]; then
  rm -rf data/example
  "$PY" -m webvision_example --out data/example --classes 10 --images-per-class 24 --seed 0
fi
"$PY" -m text_mining run --webvision data/example --out data/example_mined \
  --config configs/text_mining/example.yaml --workers "${WORKERS:-2}"
"$PY" -m pipeline shard --webvision data/example --labels data/example_mined --out data/example_shards \
  --max-size 300KB --workers "${WORKERS:-2}"
"$PY" -m pipeline loader-check --shards data/example_shards --split train --batch-size 32 --workers 2 --sampling class
if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  LAUNCH=(-m accelerate.commands.launch)
else
  LAUNCH=(-m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no)
  export ACCELERATE_USE_CPU=1
fi
"$PY" "${LAUNCH[@]}" pretrain/main.py --config configs/pretrain/example.yaml train.progress=false
"$PY" "${LAUNCH[@]}" finetune/main.py --config configs/finetune/example.yaml init=runs/example-wt train.progress=false
"$PY" -m finetune evaluate --checkpoints runs/example-ft/best --shards data/example_shards --split val --workers 2
echo
cat data/example_mined/report.md
echo "Outputs: data/example_mined/{images,vocabulary,classes,keyword_classes}.parquet, report.md, keyword_frequency.png"
echo "         data/example_shards/{train,val}/*.tar with manifest.parquet, sizes.json, report.json"
echo "         runs/example-wt/{metrics.csv,checkpoints/,backbone.safetensors,config.yaml}"
echo "         runs/example-ft/{metrics.csv,best/,model.safetensors}, best/eval-val.json"
"$PY" -m finetune report --run runs/example-ft >/dev/null
echo "         runs/example-ft/report/index.html (curves, most confused classes)"
"$PY" -m text_mining inspect --labels data/example_mined --webvision data/example --out data/example_inspect >/dev/null
echo
echo "Inspection report of the mined labels (open it in a browser): $(pwd)/data/example_inspect/index.html"
