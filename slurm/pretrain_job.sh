# The body of slurm/pretrain_wt.sh, pretrain_lw.sh and finetune.sh (sourced; needs REPO and
# DEFAULT_CONFIG; ENTRY is the training script, default pretrain/main.py).
#
# One srun task per node runs `accelerate launch` with the node count, this node's rank and the
# head node's address from Slurm; processes per node = GPUs on the node ($SLURM_GPUS_ON_NODE, else
# nvidia-smi), or $PROCS_PER_NODE; without a GPU one CPU process per node on gloo.
#
# Preemption: Slurm sends USR1 to this shell before the time limit (--signal=B:USR1@300); the trap
# writes $WEBTAG_CONTROL_DIR/stop, the training saves a checkpoint at its next check
# (train.log_every steps) and exits with status "stopped", and the job requeues itself. The next
# start resumes from that checkpoint (train.resume=auto). Preemption, scancel and the time limit
# send TERM (SIGKILL follows after KillWait, 30 s by default). srun answers a TERM of its own by
# SIGKILLing its step at once ("forcing job termination"), before the training could save, so srun
# runs in a session of its own (setsid): a TERM to this shell's process group (`scancel --full`,
# `--batch`) does not reach it. This shell's TERM trap passes the TERM on to the step's processes
# (`scancel --signal=TERM JOB`: the steps, never srun itself); the training's per-step stop check
# (train.stop_check_every) sees it, saves a checkpoint within the grace time and exits "stopped",
# and the job requeues itself (tests/test_faults/test_slurm_preemption.py, on the local cluster,
# proctrack/linuxproc). A TERM sent to the steps directly reaches the training the same way.
# Environment: PYTHON, PROCS_PER_NODE, MAIN_PORT, WEBTAG_CONTROL_DIR (node-local folder on the
# head node; default under $TMPDIR or /tmp).
set -euo pipefail
TAG=$(basename "$(dirname "${ENTRY:-pretrain/main.py}")")
if [ ! -f "$REPO/pretrain/main.py" ]; then
  echo "[$TAG] $REPO is not the webtag repository: submit from its root or set WEBTAG_REPO" >&2
  exit 2
fi
cd "$REPO"
# shellcheck source=slurm/common.sh
source "$REPO/slurm/common.sh"
CONFIG=$DEFAULT_CONFIG
if [ $# -gt 0 ] && [[ "$1" != *=* ]]; then CONFIG=$1; shift; fi
if [ ! -f "$CONFIG" ]; then echo "[$TAG] config $CONFIG not found (in $REPO)" >&2; exit 2; fi

NNODES=${SLURM_NNODES:-1}
if [ -n "${PROCS_PER_NODE:-}" ]; then
  PPN=$PROCS_PER_NODE
elif [ -n "${SLURM_GPUS_ON_NODE:-}" ] && [ "${SLURM_GPUS_ON_NODE}" -gt 0 ] 2>/dev/null; then
  PPN=$SLURM_GPUS_ON_NODE
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  PPN=$(nvidia-smi -L | grep -c '^GPU')
else
  PPN=0
fi
if [ "$PPN" -eq 0 ]; then PPN=1; export ACCELERATE_USE_CPU=1; fi
NPROC=$((NNODES * PPN))
HEAD=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-$(hostname)}" | head -1)
PORT=${MAIN_PORT:-$((20000 + ${SLURM_JOB_ID:-0} % 20000))}
export WEBTAG_CONTROL_DIR=${WEBTAG_CONTROL_DIR:-${TMPDIR:-/tmp}/webtag-${SLURM_JOB_ID:-$$}}
mkdir -p "$WEBTAG_CONTROL_DIR"
rm -f "$WEBTAG_CONTROL_DIR/stop" "$WEBTAG_CONTROL_DIR/status"

LAUNCH=("$PYTHON" -m accelerate.commands.launch --num_processes "$NPROC" --num_machines "$NNODES"
        --main_process_ip "$HEAD" --main_process_port "$PORT" --mixed_precision no --dynamo_backend no)
if [ "$NPROC" -gt 1 ]; then LAUNCH+=(--multi_gpu); fi
ARGS=$(printf '%q ' "${ENTRY:-pretrain/main.py}" --config "$CONFIG" "$@")
CMD="$(printf '%q ' "${LAUNCH[@]}") --machine_rank \$SLURM_NODEID $ARGS"

stop_asked=""
on_signal() {
  stop_asked=$1
  echo "[$TAG] $(date +%T) got $1: asking the training to save a checkpoint and stop"
  touch "$WEBTAG_CONTROL_DIR/stop"
  # TERM: the grace time is short, so the training must see a signal (its per-step check), not
  # only the control file (read at log points); the steps' processes, not srun, get it
  if [ "$1" = TERM ] && [ -n "${SLURM_JOB_ID:-}" ]; then
    scancel --signal=TERM "$SLURM_JOB_ID" || echo "[$TAG] could not pass TERM on to the job's steps" >&2
  fi
}
trap 'on_signal USR1' USR1
trap 'on_signal TERM' TERM

echo "[$TAG] $(date +%T) job ${SLURM_JOB_ID:-?} start ${SLURM_RESTART_COUNT:-0}: $NNODES node(s) x $PPN process(es)," \
     "head $HEAD:$PORT${ACCELERATE_USE_CPU:+ (CPU, gloo)}; config $CONFIG $*"
# setsid: srun in a session (and process group) of its own, out of reach of a TERM to this shell's
# process group (srun would SIGKILL the step); the TERM trap above passes the TERM on to the steps
setsid srun --kill-on-bad-exit=1 --ntasks="$NNODES" --ntasks-per-node=1 bash -c "$CMD" &
pid=$!
rc=0
while :; do
  wait "$pid" && rc=0 || rc=$?
  kill -0 "$pid" 2>/dev/null || break     # a trapped signal interrupted wait: keep waiting
done
status=$(cat "$WEBTAG_CONTROL_DIR/status" 2>/dev/null || echo unknown)
echo "[$TAG] $(date +%T) training exited with $rc, status $status"
if [ "$status" = stopped ] || { [ -n "$stop_asked" ] && [ "$status" != finished ] && [ "$rc" -ne 2 ]; }; then
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "[$TAG] requeueing job $SLURM_JOB_ID; it resumes from the newest checkpoint"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
  fi
fi
exit "$rc"
