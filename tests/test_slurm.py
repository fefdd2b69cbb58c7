"""slurm/text_mining.sh and slurm/shard.sh on a real (local) Slurm cluster: array jobs with dependencies.

Needs a running cluster (scripts/local_slurm.sh start; .ci/run starts one); skipped otherwise."""
import os
import shutil
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CONFIG, REPO, example_config
from text_mining import schema
from text_mining.runner import run_all


def _slurm_up() -> bool:
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return res.returncode == 0 and "idle" in res.stdout


pytestmark = pytest.mark.skipif(not _slurm_up(), reason="no local Slurm cluster (scripts/local_slurm.sh start)")


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
