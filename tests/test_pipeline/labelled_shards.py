"""Test helper: a train split of real shards whose samples all show one tiny JPEG, with the class
and keyword labels a test chooses (the sampling tests need exact label counts, not images)."""
from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
from PIL import Image

from pipeline.shards import ShardConfig, merge_split, write_part


def write_labelled_shards(root: Path, classes: list[int], keywords: list[list[int]], max_count: int,
                          colour=(200, 10, 10), parts: int = 4) -> Path:
    """Shards under ``root/shards`` (train split, ``parts`` parts merged): sample i has class
    ``classes[i]`` (label weight 1) and keyword ids ``keywords[i]``. Returns the shard folder."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="JPEG")
    (root / "img.jpg").write_bytes(buf.getvalue())
    n = len(classes)
    table = pa.table({
        "index": pa.array(range(n), pa.int64()), "key": [f"k{i}" for i in range(n)], "path": ["img.jpg"] * n,
        "source": ["google"] * n, "class_id": pa.array(classes, pa.int32()),
        "keyword_ids": pa.array(keywords, pa.list_(pa.int32())),
        "label_ids": pa.array([[c] for c in classes], pa.list_(pa.int32())),
        "label_weights": pa.array([[1.0]] * n, pa.list_(pa.float32()))})
    out = root / "shards"
    for part in range(parts):
        write_part("train", table, root, out, ShardConfig(max_count=max_count), part, parts)
    merge_split(out, "train")
    return out
