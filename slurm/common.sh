# Sourced by the submission scripts in slurm/: the settings every array submission shares.
# Needs REPO. Sets PYTHON (the interpreter with webtag installed: $PYTHON, else <repo>/.venv,
# else python3), THROTTLE (the %N array limit from MAX_ARRAY_PARALLEL) and COMMON_SBATCH.
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
THROTTLE=""
if [ -n "${MAX_ARRAY_PARALLEL:-}" ]; then THROTTLE="%$MAX_ARRAY_PARALLEL"; fi
# shellcheck disable=SC2206
COMMON_SBATCH=(--parsable --chdir="$REPO" ${SBATCH_ARGS:-})
