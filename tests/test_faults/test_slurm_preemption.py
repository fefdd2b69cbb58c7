"""Preemption on a real (local) Slurm cluster: SIGTERM to every process of a running 2-node
pretraining job (what preemption, ``scancel`` and the time limit send before SIGKILL), a
checkpoint, the job requeued, resumed, finished at the same final step as an uninterrupted run.

Known to fail today (strict xfail): srun answers its own SIGTERM by forcing the step's
termination, so the trainer is SIGKILLed before it saves; see the marker's reason.

Needs a running cluster (scripts/local_slurm.sh start; .ci/run starts one); skipped otherwise."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import REPO


def _slurm_up() -> bool:
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return res.returncode == 0 and "idle" in res.stdout


if os.environ.get("WEBTAG_REQUIRE_SLURM") == "1" and not _slurm_up():  # .ci/run: never skip silently
    raise RuntimeError("WEBTAG_REQUIRE_SLURM=1 but no local Slurm cluster answers (scripts/local_slurm.sh start)")
pytestmark = pytest.mark.skipif(not _slurm_up(), reason="no local Slurm cluster (scripts/local_slurm.sh start)")


def _job_field(job_id: str, field: str) -> str:
    text = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    for token in text.split():
        if token.startswith(field + "="):
            return token.split("=", 1)[1]
    return ""


@pytest.mark.xfail(strict=True, reason="open: srun takes the SIGTERM as 'forcing job termination' and SIGKILLs "
                   "the step before the trainer's per-step check can save; the job still requeues (the "
                   "script's TERM trap) and resumes from the newest periodic checkpoint")
def test_sigterm_to_the_whole_job_checkpoints_requeues_and_resumes(shards_v1, mined_v1, tmp_path):
    from conftest import PRETRAIN_EXAMPLE, pretrain_overrides
    from pretrain import checkpoint as ckpt
    from pretrain.trainer import FINISHED

    out, log = tmp_path / "run", tmp_path / "job.out"
    # log points far apart: the stop must come from the per-step check, within Slurm's grace time
    overrides = pretrain_overrides(shards_v1, mined_v1, out, "train.max_steps=150", "loader.batch_size=4",
                                   "train.checkpoint_every=10", "train.log_every=1000", "loader.workers=1")
    env = dict(os.environ, PYTHON=sys.executable, WEBTAG_LOG="INFO", OMP_NUM_THREADS="1")
    res = subprocess.run(["sbatch", "--parsable", "-N", "2", f"--output={log}",
                          str(REPO / "slurm" / "pretrain_wt.sh"), str(PRETRAIN_EXAMPLE), *overrides],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip().split(";")[0]
    try:
        deadline = time.time() + 300
        while not ckpt.list_checkpoints(out):
            assert time.time() < deadline, log.read_text() if log.exists() else "no job output"
            assert _job_field(job, "JobState") in ("PENDING", "RUNNING", "CONFIGURING"), log.read_text()
            time.sleep(0.5)
        sent = time.time()
        subprocess.run(["scancel", "--signal=TERM", "--full", job], check=True)   # every process of the job
        while _job_field(job, "Restarts") != "1" or _job_field(job, "JobState") != "PENDING":
            assert time.time() < deadline, log.read_text()
            time.sleep(0.5)
        stopped_within = time.time() - sent
        time.sleep(2.5)   # slurmd refuses a credential issued in the second of the requeue's revocation
        subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
        while not (out / FINISHED).exists() or _job_field(job, "JobState") != "COMPLETED":
            assert time.time() < deadline, log.read_text()
            assert _job_field(job, "JobState") not in ("FAILED", "CANCELLED", "TIMEOUT"), log.read_text()
            time.sleep(0.5)
    finally:
        subprocess.run(["scancel", job], capture_output=True)
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
