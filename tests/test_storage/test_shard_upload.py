"""The shard writer's output to S3 (moto on loopback): `pipeline shard --out s3://...` writes
locally and uploads, then the loader check and a training run read the shards from there."""
from __future__ import annotations

import os
import subprocess
import sys

from pathlib import Path

from pipeline import schema
from webtag.storage import location

REPO = Path(__file__).resolve().parents[2]


def _run(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO), WEBTAG_LOG="WARNING")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_shard_to_s3_then_loader_check_and_train_from_s3(example_v1, mined_v1, bucket, tmp_path):
    url = f"{bucket}/shards"
    p = _run("-m", "pipeline", "shard", "--webvision", str(example_v1), "--labels", str(mined_v1), "--out", url,
             "--max-size", "100000", "--workers", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for split in ("train", "val"):
        assert (location(url) / split / schema.SIZES_FILE).is_file()
        assert not (location(url) / split / "_parts").is_dir()
    p = _run("-m", "pipeline", "loader-check", "--shards", url, "--split", "val", "--workers", "1",
             "--batch-size", "4", "loader.image_size=32", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "run"
    p = _run("-m", "pretrain", "train", "--config", str(REPO / "configs" / "pretrain" / "example.yaml"),
             f"data.shards={url}", f"data.labels={mined_v1}", f"train.output_dir={out}", "train.progress=false",
             "train.tensorboard=false", "train.max_steps=2", "train.checkpoint_every=0", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (out / "metrics.csv").is_file()


def test_upload_refuses_an_unfinished_split(shards_v1, bucket, tmp_path):
    root = tmp_path / "shards"
    (root / "val").mkdir(parents=True)
    for f in (shards_v1 / "val").iterdir():
        if f.is_file() and f.name != schema.SIZES_FILE:
            (root / "val" / f.name).write_bytes(f.read_bytes())
    p = _run("-m", "pipeline", "upload", str(root), f"{bucket}/shards", cwd=tmp_path)
    assert p.returncode == 2 and "val not finished" in p.stderr and "Traceback" not in p.stderr
    assert not location(f"{bucket}/shards/val/manifest.parquet").is_file()
