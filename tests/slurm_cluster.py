"""The local Slurm cluster as the tests see it (scripts/local_slurm.sh start; .ci/run starts one):
whether it answers, the skip/require marker of a Slurm test module, and a job's fields."""
import os
import shutil
import subprocess

import pytest


def slurm_up() -> bool:
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return res.returncode == 0 and "idle" in res.stdout


def requires_slurm():
    """A module's pytestmark: skipped without a cluster, an error with WEBTAG_REQUIRE_SLURM=1 (CI
    never skips silently)."""
    up = slurm_up()
    if os.environ.get("WEBTAG_REQUIRE_SLURM") == "1" and not up:
        raise RuntimeError("WEBTAG_REQUIRE_SLURM=1 but no local Slurm cluster answers (scripts/local_slurm.sh start)")
    return pytest.mark.skipif(not up, reason="no local Slurm cluster (scripts/local_slurm.sh start)")


def job_field(job_id: str, field: str) -> str:
    text = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    for token in text.split():
        if token.startswith(field + "="):
            return token.split("=", 1)[1]
    return ""


def preempt_requeue_and_finish(script, args: list[str], out, log, signal_cmd: list[str], env: dict, cwd,
                               timeout_s: float = 300) -> float:
    """sbatch -N 2 ``script args``; once its first checkpoint exists, run ``signal_cmd + [job]``
    (e.g. ``scancel --signal=USR1 --batch``); wait until the job is requeued (Restarts=1,
    PENDING), start it again at once, and wait until it completed with ``out/finished.json``.
    Returns the seconds from the signal to the requeue."""
    import subprocess
    import time

    from pretrain import checkpoint as ckpt
    from pretrain.trainer import FINISHED

    res = subprocess.run(["sbatch", "--parsable", "-N", "2", f"--output={log}", str(script), *args],
                         capture_output=True, text=True, env=env, cwd=cwd)
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip().split(";")[0]

    def text() -> str:
        return log.read_text() if log.exists() else "no job output"

    try:
        deadline = time.time() + timeout_s
        while not ckpt.list_checkpoints(out):
            assert time.time() < deadline, text()
            assert job_field(job, "JobState") in ("PENDING", "RUNNING", "CONFIGURING"), text()
            time.sleep(0.5)
        sent = time.time()
        subprocess.run([*signal_cmd, job], check=True)
        while job_field(job, "Restarts") != "1" or job_field(job, "JobState") != "PENDING":
            assert time.time() < deadline, text()
            time.sleep(0.5)
        requeued_after = time.time() - sent
        # slurmd refuses a credential issued in the same second as the requeue's revocation
        # ("Job credential revoked"); on a real cluster the requeued job waits ~2 minutes anyway
        time.sleep(2.5)
        subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
        while not (out / FINISHED).exists() or job_field(job, "JobState") != "COMPLETED":
            assert time.time() < deadline, text()
            assert job_field(job, "JobState") not in ("FAILED", "CANCELLED", "TIMEOUT"), text()
            time.sleep(0.5)
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    return requeued_after
