"""Shards on an S3-compatible server (moto on loopback, through s3fs) and behind a pipe: command:
the loader reads them as it reads a local folder."""
from __future__ import annotations

import shlex

import numpy as np
import pytest

from pipeline import schema
from pipeline.loader import LoaderConfig, ShardLoader
from webtag import storage
from webtag.remote_copy import publish_tree
from webtag.storage import StorageError, location


def _epoch(split, **kw):
    """Every batch of one ordered epoch: (indices, images)."""
    cfg = LoaderConfig(batch_size=6, workers=2, train=False, image_size=32, **kw)
    out = [(b["index"].tolist(), b["image"].numpy()) for b in ShardLoader(split, cfg)]
    return [i for x, _ in out for i in x], np.concatenate([im for _, im in out])


@pytest.fixture
def remote_shards(shards_v1, bucket):
    url = f"{bucket}/shards"
    n = publish_tree(shards_v1, url, last=(schema.SIZES_FILE,))
    assert n == sum(1 for p in shards_v1.rglob("*") if p.is_file() and "_parts" not in p.parts)
    return url


def test_loader_reads_an_s3_split_as_the_local_one(shards_v1, remote_shards):
    local_idx, local_img = _epoch(shards_v1 / "val")
    split = schema.split_folder(remote_shards, "val")
    assert str(split) == f"{remote_shards}/val"
    remote_idx, remote_img = _epoch(split)
    assert remote_idx == local_idx and len(set(local_idx)) == sum(schema.read_sizes(shards_v1 / "val").values())
    assert np.array_equal(remote_img, local_img)


def test_training_loader_on_s3_with_class_sampling(shards_v1, remote_shards):
    """Repeat factors come from the remote manifest: the same stream as from the local copy."""
    cfg = LoaderConfig(batch_size=8, workers=1, image_size=32, sampling="class", seed=4)
    local = [b["index"].tolist() for b in ShardLoader(shards_v1 / "train", cfg)]
    remote = [b["index"].tolist() for b in ShardLoader(location(remote_shards) / "train", cfg)]
    assert remote == local and local


def test_pipe_shard_list_reads_like_the_folder(shards_v1):
    root = f"pipe:cat {shlex.quote(str(shards_v1))}/{{}}"
    split = schema.split_folder(root, "val")
    assert str(split) == f"pipe:cat {shlex.quote(str(shards_v1))}/val"
    assert _epoch(split)[0] == _epoch(shards_v1 / "val")[0]


def test_pipe_that_fails_loses_the_shard_counted(shards_v1, tmp_path):
    """A shard the command cannot produce is an unreadable shard: its samples are counted lost,
    the epoch is filled from the others."""
    copy = tmp_path / "val"
    copy.mkdir()
    for p in (shards_v1 / "val").iterdir():
        if p.is_file():
            (copy / p.name).write_bytes(p.read_bytes())
    first = sorted(schema.read_sizes(copy))[0]
    (copy / first).unlink()
    cfg = LoaderConfig(batch_size=6, workers=1, train=False, image_size=32)
    loader = ShardLoader(location(f"pipe:cat {tmp_path}/{{}}") / "val", cfg)
    batches = list(loader)
    assert loader.bad_samples == schema.read_sizes(copy)[first]
    assert sum(len(b["index"]) for b in batches) == len(loader) * 6


def test_a_split_without_its_completion_marker_is_not_finished(shards_v1, bucket):
    publish_tree(shards_v1 / "val", f"{bucket}/shards/val", last=(schema.SIZES_FILE,))
    storage.filesystem(bucket)[0].rm_file(f"{bucket[5:]}/shards/val/{schema.SIZES_FILE}")
    with pytest.raises(ValueError, match="no finished split 'val'"):
        schema.split_folder(f"{bucket}/shards", "val")


def test_republishing_removes_the_marker_before_the_files(shards_v1, bucket, tmp_path):
    """The marker of the old upload is gone before any new file lands (an upload cut short leaves
    no finished split with mixed files)."""
    url = f"{bucket}/val"
    publish_tree(shards_v1 / "val", url, last=(schema.SIZES_FILE,))
    fs = storage.filesystem(url)[0]
    seen = []
    real_put = fs.put_file

    def put_file(lpath, rpath, **kw):   # what a concurrent reader sees before each upload
        seen.append(fs.exists(f"{url[5:]}/{schema.SIZES_FILE}"))
        fs.invalidate_cache()
        return real_put(lpath, rpath, **kw)

    fs.put_file = put_file
    try:
        publish_tree(shards_v1 / "val", url, last=(schema.SIZES_FILE,))
    finally:
        del fs.put_file
    assert seen and not any(seen)


def test_missing_backend_names_the_extra():
    pytest.importorskip("s3fs")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(StorageError, match=r"pip install 'webtag\[gcs\]'"):
            location("gs://bucket/shards").is_file()
    else:
        pytest.skip("gcsfs is installed")


def test_pipe_template_needs_a_placeholder():
    with pytest.raises(StorageError, match="needs {}"):
        location("pipe:cat /data/shards.tar")
