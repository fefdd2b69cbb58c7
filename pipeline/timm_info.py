"""timm's ``_info.json`` beside the shards: what ``--dataset wds/NAME --data-dir SHARDS`` reads.

timm's WebDataset reader (``timm.data.readers.reader_wds``) needs, in train mode, each split's
sample count and its shard files with their sample counts. They are the splits' own ``sizes.json``
(which open_clip's ``--train-num-samples`` users read too, and which stays): this module writes
them into one file at the shards root, ``_info.json``::

    {"name": "webtag", "splits": {"train": {"name": "train", "num_samples": N,
                                            "filenames": ["train/shard-000000.tar", ...],
                                            "shard_lengths": [n0, ...]}, "val": {...}}}

File names are relative to the root (timm joins them to ``root``). Every finished split (a
folder with ``sizes.json``) is listed; the merge of a split rewrites the file (atomically).
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline import schema
from webtag.atomic import write_text_atomic

INFO_FILE = "_info.json"


def timm_info(root: str | Path) -> dict:
    """The ``_info.json`` document of the shards root ``root``: every finished split."""
    root = Path(root)
    splits = {}
    for split_dir in sorted(p for p in root.iterdir() if (p / schema.SIZES_FILE).is_file()):
        sizes = schema.read_sizes(split_dir)
        names = sorted(sizes)
        splits[split_dir.name] = {"name": split_dir.name, "num_samples": sum(sizes.values()),
                                  "filenames": [f"{split_dir.name}/{n}" for n in names],
                                  "shard_lengths": [int(sizes[n]) for n in names]}
    return {"name": "webtag", "splits": splits}


def write_timm_info(root: str | Path) -> Path:
    """Write ``root/_info.json`` from the finished splits' sizes.json."""
    path = Path(root) / INFO_FILE
    write_text_atomic(path, json.dumps(timm_info(root), indent=1) + "\n")
    return path
