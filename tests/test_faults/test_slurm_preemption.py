"""Preemption on a real (local) Slurm cluster: SIGTERM to every process of a running 2-node
pretraining job (what preemption, ``scancel`` and the time limit send before SIGKILL), a
checkpoint, the job requeued, resumed, finished at the same final step as an uninterrupted run.

srun answers a SIGTERM of its own by SIGKILLing its step ("forcing job termination"): the job script
runs srun in a session of its own and passes the TERM on to the steps, which this test shows.

Needs a running cluster (scripts/local_slurm.sh start; .ci/run starts one); skipped otherwise."""
import json
import os
import sys

import pytest

from conftest import REPO
from slurm_cluster import preempt_requeue_and_finish, requires_slurm


pytestmark = requires_slurm()


def test_sigterm_to_the_whole_job_checkpoints_requeues_and_resumes(shards_v1, mined_v1, tmp_path):
    from conftest import PRETRAIN_EXAMPLE, pretrain_overrides
    from pretrain import checkpoint as ckpt
    from pretrain.trainer import FINISHED

    out, log = tmp_path / "run", tmp_path / "job.out"
    # log points far apart: the stop must come from the per-step check, within Slurm's grace time
    overrides = pretrain_overrides(shards_v1, mined_v1, out, "train.max_steps=150", "loader.batch_size=4",
                                   "train.checkpoint_every=10", "train.log_every=1000", "loader.workers=1")
    env = dict(os.environ, PYTHON=sys.executable, WEBTAG_LOG="INFO", OMP_NUM_THREADS="1")
    # every process of the job, as preemption and the time limit do
    stopped_within = preempt_requeue_and_finish(REPO / "slurm" / "pretrain_wt.sh", [str(PRETRAIN_EXAMPLE), *overrides],
                                                out, log, ["scancel", "--signal=TERM", "--full"], env, REPO)
    text = log.read_text()
    assert "got TERM" in text and "requeueing job" in text, text
    assert "killed by signal" not in text, text
    stopped = [ln for ln in text.splitlines() if "stop requested" in ln]
    assert stopped, text
    saved_at = int(stopped[0].split("checkpoint saved at step ")[1].split(",")[0])
    assert 10 <= saved_at < 150   # log points are 1000 steps apart: the per-step check stopped it
    assert stopped_within < 30, f"{stopped_within:.0f} s: past Slurm's default KillWait"
    assert f"resumed from {out / 'checkpoints' / ckpt.checkpoint_name(saved_at)}" in text
    assert json.loads((out / FINISHED).read_text())["step"] == 150
