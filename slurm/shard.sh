#!/usr/bin/env bash
# Submit the shard writer to Slurm: an array of NUM_PARTS tasks, then the merge (afterok).
#
#   slurm/shard.sh ROOT LABELS OUT [NUM_PARTS] [--split train|val|all] [--resize-shorter S] [...]
#
# ROOT: the WebVision release; LABELS: the text-mining output folder; OUT: the shards folder.
# Extra arguments go to `python -m pipeline shard`. A finished part is skipped when resubmitted.
# Environment: PYTHON, SBATCH_ARGS, PART_CPUS (default 1), PART_MEM (default 4G), MAX_ARRAY_PARALLEL.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(realpath "$1"); LABELS=$(realpath "$2"); OUT=$(realpath -m "$3"); shift 3
NUM_PARTS=64
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then NUM_PARTS=$1; shift; fi
# shellcheck source=slurm/common.sh
source "$REPO/slurm/common.sh"
SPLIT=all
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [ "${args[$i]}" = "--split" ]; then SPLIT=${args[$((i + 1))]}; fi
done
EXTRA=$(printf '%q ' "$@")
LOGS="$OUT/_slurm-logs"
mkdir -p "$LOGS"
CLI="$(printf '%q' "$PYTHON") -m pipeline"
shard=$(sbatch "${COMMON_SBATCH[@]}" --job-name=shard --array="0-$((NUM_PARTS - 1))$THROTTLE" \
  --cpus-per-task="${PART_CPUS:-1}" --mem="${PART_MEM:-4G}" --output="$LOGS/shard-%a.log" \
  --wrap="$CLI shard --webvision $(printf '%q' "$ROOT") --labels $(printf '%q' "$LABELS") --out $(printf '%q' "$OUT") --workers 1 --part \$SLURM_ARRAY_TASK_ID --num-parts $NUM_PARTS $EXTRA")
merge=$(sbatch "${COMMON_SBATCH[@]}" --job-name=shard-merge --dependency="afterok:$shard" \
  --cpus-per-task=1 --mem="${PART_MEM:-4G}" --output="$LOGS/merge.log" \
  --wrap="$CLI shard-merge --out $(printf '%q' "$OUT") --split $SPLIT")
echo "shard=$shard merge=$merge"
echo "logs: $LOGS; done when $OUT/<split>/report.json exists"
