#!/usr/bin/env bash
#SBATCH --job-name=finetune
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
# Finetuning on Slurm, from the repository root:
#
#   sbatch [-N NODES] [--gres=gpu:G] [--cpus-per-task=C] [--time=...] slurm/finetune.sh [CONFIG] init=PATH [key=value ...]
#
# CONFIG defaults to configs/finetune/webvision.yaml; key=value overrides go to finetune/main.py.
# Multi-node launch, preemption and requeue as in slurm/pretrain_job.sh.
DEFAULT_CONFIG=configs/finetune/webvision.yaml
ENTRY=finetune/main.py
REPO=${WEBTAG_REPO:-${SLURM_SUBMIT_DIR:-$PWD}}
# shellcheck source=slurm/pretrain_job.sh
source "$REPO/slurm/pretrain_job.sh"
