"""What the data says before training starts: head size, shards to train on, held-out shards.

The head is sized from the text-mining output (the keyword vocabulary for WT-Set, the class list
for LW-Set) and checked against the shards' manifest, so a config or shard set that does not
match is refused before any step, with the files named: the labels folder must be finished (its
``complete.json``) and the shards must record that they were built from it (the labels
fingerprint in the split's report), so shards of one dataset never train with the labels of
another.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import schema as shard_schema
from text_mining import schema as tm_schema
from webtag.storage import is_url, location, parquet_source

from .config import DataConfig, ModelConfig


class DataError(ValueError):
    """The data and the config do not fit together."""


@dataclass
class DataInfo:
    train_dir: Path
    num_keywords: int
    num_classes: int
    num_outputs: int                      # the head size for the configured target
    train_shards: list[str]
    holdout_shards: list[str]
    train_samples: int
    labels_fingerprint: str = ""          # of data.labels (its complete.json), which the shards match
    labels_dir: Path | None = None        # data.labels on local disk (a URL's: its checked copy)


def inspect_data(cfg: DataConfig, model: ModelConfig | None = None) -> DataInfo:
    if not cfg.shards:
        raise DataError("data.shards is not set: the folder written by `python -m pipeline shard --out`")
    if not cfg.labels:
        raise DataError("data.labels is not set: the folder written by `python -m text_mining run --out`")
    train_dir = location(cfg.shards) / "train"     # local, fsspec URL or pipe: (webtag.storage)
    sizes_file = train_dir / shard_schema.SIZES_FILE
    if not sizes_file.is_file():
        raise DataError(f"{sizes_file} does not exist: data.shards must be a finished shard folder "
                        "(python -m pipeline shard ... && python -m pipeline shard-merge)")
    labels = _local_labels(cfg.labels)
    for name in (tm_schema.VOCABULARY_FILE, tm_schema.CLASSES_FILE):
        if not (labels / name).is_file():
            raise DataError(f"{labels / name} does not exist: data.labels must be a text-mining output folder")
    try:   # data.labels finished, and the labels the shards were built from (both named if not)
        marker = shard_schema.check_labels(train_dir, labels)
    except ValueError as exc:
        raise DataError(f"data.shards / data.labels: {exc}") from None
    num_keywords = pq.read_metadata(labels / tm_schema.VOCABULARY_FILE).num_rows
    num_classes = pq.read_metadata(labels / tm_schema.CLASSES_FILE).num_rows
    num_outputs = num_keywords if cfg.target == "keywords" else num_classes

    manifest = train_dir / shard_schema.MANIFEST_FILE
    t = pq.read_table(parquet_source(manifest), columns=["class_id", "keyword_ids"])
    max_kw = pc.max(pc.list_flatten(t["keyword_ids"])).as_py() if len(t) else None
    max_cls = pc.max(t["class_id"]).as_py() if len(t) else None
    if max_kw is not None and max_kw >= num_keywords:
        raise DataError(f"{manifest}: keyword id {max_kw} but {labels / tm_schema.VOCABULARY_FILE} has "
                        f"{num_keywords} keywords: the shards were made from other labels than data.labels")
    if max_cls is not None and max_cls >= num_classes:
        raise DataError(f"{manifest}: class id {max_cls} but {labels / tm_schema.CLASSES_FILE} has "
                        f"{num_classes} classes: the shards were made from other labels than data.labels")
    if model is not None and model.num_classes is not None and model.num_classes != num_outputs:
        what = "keywords in the vocabulary" if cfg.target == "keywords" else "classes"  # weights, class
        raise DataError(f"model.num_classes={model.num_classes} but the data has {num_outputs} {what} "
                        f"({labels}); drop model.num_classes to size the head from the data")

    sizes = shard_schema.read_sizes(train_dir)
    names = sorted(sizes)
    if cfg.holdout_shards < 0 or cfg.holdout_shards >= len(names):
        raise DataError(f"data.holdout_shards={cfg.holdout_shards} leaves no training shard of the "
                        f"{len(names)} in {train_dir}")
    holdout = names[len(names) - cfg.holdout_shards:] if cfg.holdout_shards else []
    train = [n for n in names if n not in set(holdout)]
    return DataInfo(train_dir, num_keywords, num_classes, num_outputs, train, holdout,
                    sum(sizes[n] for n in train), marker["fingerprint"], labels)


def _local_labels(labels: str) -> Path:
    """``data.labels`` as a local folder: a URL's finished text-mining output is copied into
    ``$WEBTAG_CACHE_DIR/labels`` (once per upload: kept while its complete.json is the same)."""
    if not is_url(labels):
        return Path(labels)
    from text_mining.publish import local_labels
    from webtag.remote_copy import cache_root
    try:
        return local_labels(labels, cache_root() / "labels")
    except (OSError, ValueError) as exc:   # not finished there, unreadable, no backend
        raise DataError(f"data.labels={labels}: {exc}") from None
