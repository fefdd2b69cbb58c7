"""The interop tests' helpers: command lines in a subprocess, and one short pretraining run with a
finetuning run on it (CPU, through the command lines)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PRETRAIN = REPO / "configs" / "pretrain" / "example.yaml"
FINETUNE = REPO / "configs" / "finetune" / "example.yaml"
COMMON = ("train.progress=false", "train.tensorboard=false")


def run_cli(*args, check: bool = True, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, WEBTAG_LOG="INFO", OMP_NUM_THREADS="1", **(env or {}))
    res = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=cwd, env=full_env, capture_output=True,
                         text=True, timeout=600)
    if check:
        assert res.returncode == 0, f"{args}\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    return res


def make_shards(example, mined, out: Path) -> Path:
    """Small train and val shards of ``example`` (several per split)."""
    from pipeline.shards import ShardConfig, shard_all
    shard_all(example, mined, out, ShardConfig(max_size=100_000), splits=("train", "val"), workers=1, num_parts=2)
    return out


@pytest.fixture(scope="session")
def runs(example_v1, mined_v1, tmp_path_factory) -> dict[str, Path]:
    """A finished pretraining run (4 steps) and a finetuning run on it (4 steps, best/ kept)."""
    root = tmp_path_factory.mktemp("interop-runs")
    shards_v1 = make_shards(example_v1, mined_v1, root / "shards")
    pt, ft = root / "pretrain", root / "finetune"
    run_cli("pretrain", "train", "--config", PRETRAIN, f"data.shards={shards_v1}", f"data.labels={mined_v1}",
            f"train.output_dir={pt}", "train.max_steps=4", *COMMON)
    run_cli("finetune", "train", "--config", FINETUNE, f"init={pt}", f"data.shards={shards_v1}",
            f"data.labels={mined_v1}", f"train.output_dir={ft}", "train.max_steps=4", "train.eval_every=2", *COMMON)
    return {"pretrain": pt, "finetune": ft, "best": ft / "best", "labels": mined_v1, "shards": shards_v1}
