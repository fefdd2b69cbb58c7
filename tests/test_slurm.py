"""slurm/text_mining.sh and slurm/shard.sh on a real (local) Slurm cluster: array jobs with dependencies.

Needs a running cluster (scripts/local_slurm.sh start; .ci/run starts one); skipped otherwise."""
import json
import os
import subprocess
import sys
import time

import pyarrow.parquet as pq

from conftest import EXAMPLE_CONFIG, REPO, example_config
from slurm_cluster import job_field, preempt_requeue_and_finish, requires_slurm
from text_mining import schema
from text_mining.runner import run_all


pytestmark = requires_slurm()


def test_slurm_array_pipeline_matches_local_run(example_v2, tmp_path):
    out = tmp_path / "slurm_out"
    env = dict(os.environ, PYTHON=sys.executable, PART_MEM="1G", REDUCE_MEM="2G", REDUCE_CPUS="1")
    res = subprocess.run(["bash", str(REPO / "slurm" / "text_mining.sh"), str(example_v2), str(out), "3",
                          "--config", str(EXAMPLE_CONFIG)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    ids = dict(kv.split("=") for kv in res.stdout.split()[:4])
    assert set(ids) == {"count", "vocabulary", "tag", "merge"}
    # the dependencies are what Slurm holds
    dep = subprocess.run(["scontrol", "show", "job", ids["vocabulary"]], capture_output=True, text=True).stdout
    assert f"afterok:{ids['count']}" in dep
    deadline = time.time() + 600
    while not (out / schema.REPORT_JSON).exists():
        merge_state = subprocess.run(["scontrol", "show", "job", ids["merge"]], capture_output=True, text=True).stdout
        assert "FAILED" not in merge_state and "DependencyNeverSatisfied" not in merge_state, \
            merge_state + "".join(p.read_text() for p in (out / "_work" / "slurm-logs").glob("*.log"))
        assert time.time() < deadline, "the Slurm jobs did not finish in 10 minutes"
        time.sleep(2)
    logs = sorted(p.name for p in (out / "_work" / "slurm-logs").iterdir())
    assert logs == ["count-0.log", "count-1.log", "count-2.log", "merge.log", "tag-0.log", "tag-1.log",
                    "tag-2.log", "vocabulary.log"]
    local = tmp_path / "local_out"
    run_all(example_v2, local, example_config(), workers=1, num_parts=1)
    a = pq.read_table(local / schema.IMAGES_FILE)
    b = pq.read_table(out / schema.IMAGES_FILE)
    assert a.to_pydict() == b.to_pydict()
    assert schema.read_report(out)["num_parts"] == 3


def test_slurm_shard_array(mined_v1, example_v1, tmp_path):
    from pipeline import schema as shard_schema
    from pipeline.shards import ShardConfig, shard_all

    out = tmp_path / "shards"
    env = dict(os.environ, PYTHON=sys.executable, PART_MEM="1G")
    res = subprocess.run(["bash", str(REPO / "slurm" / "shard.sh"), str(example_v1), str(mined_v1), str(out),
                          "2", "--max-size", "300KB"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    deadline = time.time() + 600
    while not all((out / s / shard_schema.REPORT_FILE).exists() for s in ("train", "val")):
        assert time.time() < deadline, "".join(p.read_text() for p in (out / "_slurm-logs").glob("*.log"))
        time.sleep(2)
    local = tmp_path / "local"
    shard_all(example_v1, mined_v1, local, ShardConfig(max_size=300_000), workers=1, num_parts=2)
    for split in ("train", "val"):
        assert shard_schema.read_sizes(out / split) == shard_schema.read_sizes(local / split)
        for name in shard_schema.read_sizes(local / split):
            assert (out / split / name).read_bytes() == (local / split / name).read_bytes()


def test_slurm_pretrain_two_nodes_preempted_requeued_and_resumed(shards_v1, mined_v1, tmp_path):
    """sbatch -N 2 slurm/pretrain_wt.sh with the example config: one accelerate launch per node
    (2 CPU processes, gloo). USR1 (Slurm's warning before the time limit) makes the job save a
    checkpoint and requeue itself; the second start resumes there and finishes."""
    from conftest import PRETRAIN_EXAMPLE, pretrain_overrides
    from pretrain import checkpoint as ckpt
    from pretrain.trainer import FINISHED

    out, log = tmp_path / "run", tmp_path / "job.out"
    overrides = pretrain_overrides(shards_v1, mined_v1, out, "train.max_steps=150", "loader.batch_size=4",
                                   "train.checkpoint_every=10", "train.log_every=2")
    env = dict(os.environ, PYTHON=sys.executable, WEBTAG_LOG="INFO", OMP_NUM_THREADS="1")
    preempt_requeue_and_finish(REPO / "slurm" / "pretrain_wt.sh", [str(PRETRAIN_EXAMPLE), *overrides], out, log,
                               ["scancel", "--signal=USR1", "--batch"], env, REPO)
    text = log.read_text()
    assert "2 node(s) x 1 process(es)" in text and "2 processes (DistributedType.MULTI_CPU)" in text
    assert "got USR1" in text and "requeueing job" in text
    stopped = [ln for ln in text.splitlines() if "stop requested" in ln]
    assert stopped, text
    saved_at = int(stopped[0].split("checkpoint saved at step ")[1].split(",")[0])
    assert saved_at < 150
    assert f"resumed from {out / 'checkpoints' / ckpt.checkpoint_name(saved_at)}" in text
    assert json.loads((out / FINISHED).read_text())["step"] == 150
    assert ckpt.list_checkpoints(out)[-1].name == "step-00000150"


def test_slurm_finetune_two_nodes(shards_v1, mined_v1, tmp_path):
    """sbatch -N 2 slurm/finetune.sh: the same job body, finetune/main.py, init from a pretraining run."""
    from conftest import PRETRAIN_EXAMPLE, pretrain_overrides
    from pretrain.trainer import FINISHED

    pt, ft, log = tmp_path / "pt", tmp_path / "ft", tmp_path / "ft.out"
    res = subprocess.run([sys.executable, "-m", "pretrain", "train", "--config", str(PRETRAIN_EXAMPLE),
                          *pretrain_overrides(shards_v1, mined_v1, pt, "train.max_steps=2")],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    env = dict(os.environ, PYTHON=sys.executable, WEBTAG_LOG="INFO", OMP_NUM_THREADS="1")
    res = subprocess.run(["sbatch", "--parsable", "-N", "2", f"--output={log}", str(REPO / "slurm" / "finetune.sh"),
                          str(REPO / "configs" / "finetune" / "example.yaml"), f"init={pt}",
                          *pretrain_overrides(shards_v1, mined_v1, ft, "train.max_steps=4", "train.eval_every=4")],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip().split(";")[0]
    deadline = time.time() + 300
    while job_field(job, "JobState") != "COMPLETED":
        assert job_field(job, "JobState") not in ("FAILED", "CANCELLED", "TIMEOUT"), log.read_text()
        assert time.time() < deadline, log.read_text() if log.exists() else "no output"
        time.sleep(0.5)
    text = log.read_text()
    assert "[finetune]" in text and "2 processes (DistributedType.MULTI_CPU)" in text
    assert f"initialised from {pt}" in text
    assert json.loads((ft / FINISHED).read_text())["step"] == 4
    assert (ft / "best" / "model.safetensors").exists()
