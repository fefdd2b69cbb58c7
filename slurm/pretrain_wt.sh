#!/usr/bin/env bash
#SBATCH --job-name=pretrain-wt
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
# WT-Set pretraining on Slurm, from the repository root:
#
#   sbatch [-N NODES] [--gres=gpu:G] [--cpus-per-task=C] [--time=...] slurm/pretrain_wt.sh [CONFIG] [key=value ...]
#
# CONFIG defaults to configs/pretrain/wt.yaml; key=value overrides go to pretrain/main.py. Resources
# belong on the sbatch line; hyperparameters in the config. See slurm/pretrain_job.sh.
DEFAULT_CONFIG=configs/pretrain/wt.yaml
REPO=${WEBTAG_REPO:-${SLURM_SUBMIT_DIR:-$PWD}}
# shellcheck source=slurm/pretrain_job.sh
source "$REPO/slurm/pretrain_job.sh"
