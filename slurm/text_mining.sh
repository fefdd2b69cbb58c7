#!/usr/bin/env bash
# Submit the text-mining stage to Slurm as four dependent jobs:
#   count (array of NUM_PARTS tasks) -> vocabulary (1 job) -> tag (array) -> merge (1 job)
#
#   slurm/text_mining.sh ROOT OUT [NUM_PARTS] [--config YAML] [key=value ...]
#
# Every task writes its part atomically and skips a part that is already done, so after a failure
# re-running this script redoes only what is missing. Environment:
#   PYTHON         interpreter with webtag installed (default: <repo>/.venv/bin/python, else python3)
#   SBATCH_ARGS    extra sbatch options for every job, e.g. "--partition=cpu --account=vision"
#   PART_CPUS / PART_MEM          resources of one count/tag task (default 1 CPU, 4G)
#   REDUCE_CPUS / REDUCE_MEM      resources of the vocabulary job (word2vec threads; default 8, 32G)
#   MAX_ARRAY_PARALLEL            at most this many array tasks at once (default: no limit)
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,16p' "$0" >&2
  exit 2
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(realpath "$1"); OUT=$(realpath -m "$2"); shift 2
NUM_PARTS=64
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then NUM_PARTS=$1; shift; fi
# shellcheck source=slurm/common.sh
source "$REPO/slurm/common.sh"
EXTRA=$(printf '%q ' "$@")
LOGS="$OUT/_work/slurm-logs"
mkdir -p "$LOGS"
CLI="$(printf '%q' "$PYTHON") -m text_mining"
ARGS="--webvision $(printf '%q' "$ROOT") --out $(printf '%q' "$OUT") $EXTRA"
LAST=$((NUM_PARTS - 1))

count=$(sbatch "${COMMON_SBATCH[@]}" --job-name=tm-count --array="0-$LAST$THROTTLE" \
  --cpus-per-task="${PART_CPUS:-1}" --mem="${PART_MEM:-4G}" --output="$LOGS/count-%a.log" \
  --wrap="$CLI count $ARGS --part \$SLURM_ARRAY_TASK_ID --num-parts $NUM_PARTS")
vocab=$(sbatch "${COMMON_SBATCH[@]}" --job-name=tm-vocabulary --dependency="afterok:$count" \
  --cpus-per-task="${REDUCE_CPUS:-8}" --mem="${REDUCE_MEM:-32G}" --output="$LOGS/vocabulary.log" \
  --wrap="$CLI vocabulary $ARGS")
tag=$(sbatch "${COMMON_SBATCH[@]}" --job-name=tm-tag --dependency="afterok:$vocab" --array="0-$LAST$THROTTLE" \
  --cpus-per-task="${PART_CPUS:-1}" --mem="${PART_MEM:-4G}" --output="$LOGS/tag-%a.log" \
  --wrap="$CLI tag $ARGS --part \$SLURM_ARRAY_TASK_ID --num-parts $NUM_PARTS")
merge=$(sbatch "${COMMON_SBATCH[@]}" --job-name=tm-merge --dependency="afterok:$tag" \
  --cpus-per-task=1 --mem="${PART_MEM:-4G}" --output="$LOGS/merge.log" \
  --wrap="$CLI merge $ARGS")
echo "count=$count vocabulary=$vocab tag=$tag merge=$merge"
echo "logs: $LOGS; done when $OUT/report.json exists"
