"""The shard format: what a WebDataset sample holds and the files beside the shards.

This is the boundary between the pipeline and training (pretrain, finetune import it). Samples
follow the conventions of img2dataset and timm's ``wds`` reader, so both read our shards:

    <key>.jpg    the JPEG bytes (as downloaded unless the writer was asked to re-encode)
    <key>.cls    the class id as decimal text (timm's default target key)
    <key>.json   {"key", "index", "path", "source", "class_id", "keyword_ids", "label_ids",
                  "label_weights"}: the text-mining labels of the image

``<key>`` is the image's train-list index as 9 digits (img2dataset style: no dots or slashes);
validation samples use their position in val_filelist.txt.

Beside the shards of a split (``SHARDS/train/``, ``SHARDS/val/``): ``manifest.parquet`` (one row
per sample: shard, position in the shard, key, class and keyword ids), ``sizes.json`` (samples per
shard, the file open_clip and our loader read instead of scanning tars) and ``report.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

IMAGE_EXT = "jpg"
CLASS_EXT = "cls"
LABELS_EXT = "json"

SPLITS = ("train", "val")
MANIFEST_FILE = "manifest.parquet"
SIZES_FILE = "sizes.json"
REPORT_FILE = "report.json"

MANIFEST = pa.schema([
    pa.field("shard", pa.string(), nullable=False),        # tar file name within the split folder
    pa.field("position", pa.int32(), nullable=False),      # sample number within its shard
    pa.field("key", pa.string(), nullable=False),          # __key__ of the sample
    pa.field("index", pa.int64(), nullable=False),         # train-list (or val-list) index
    pa.field("class_id", pa.int32(), nullable=False),
    pa.field("keyword_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("bytes", pa.int64(), nullable=False),         # size of the stored JPEG
])


def sample_key(index: int) -> str:
    return f"{index:09d}"


def split_folder(root: str | Path, split: str, flag: str = "--split") -> Path:
    """``root/<split>``: a split folder of the shards root ``root`` (``python -m pipeline shard
    --out``, ``data.shards``). A split folder passed as the root (it holds sizes.json itself) or
    a split that is not there is a ValueError saying what to pass instead (``flag``: the command
    line option that names the split)."""
    root = Path(root)
    if (root / SIZES_FILE).is_file():
        raise ValueError(f"--shards {root} is a split folder (it holds {SIZES_FILE}): pass the shards root "
                         f"and the split, --shards {root.parent} {flag} {root.name}")
    folder = root / split
    if not (folder / SIZES_FILE).is_file():
        there = sorted(p.name for p in root.iterdir() if (p / SIZES_FILE).is_file()) if root.is_dir() else []
        raise ValueError(f"--shards {root} has no finished split {split!r} (no {folder / SIZES_FILE}); "
                         f"its splits: {', '.join(there) or 'none'}")
    return folder


def read_sizes(split_dir: str | Path) -> dict[str, int]:
    """Shard file name -> number of samples, in shard order."""
    with open(Path(split_dir) / SIZES_FILE, encoding="utf-8") as fh:
        return json.load(fh)
