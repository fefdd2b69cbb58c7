"""The labels a shard split is built from: the training samples of a finished text-mining folder,
the labels record (folder, fingerprints) that samples, parts and splits carry, and the refusal
to mix parts built from other labels. Split from shards.py (the writer) to keep one job each."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from text_mining import schema as tm_schema

from . import schema

def train_samples(labels_dir: str | Path) -> pa.Table:
    """The training samples: the text-mining images table (schema from text_mining.schema).

    The folder must be finished (its ``complete.json``); the table's metadata carries the labels
    record (``schema.LABEL_KEYS``) that the shards will record."""
    record = labels_record(labels_dir)
    t = tm_schema.read_table(Path(labels_dir) / tm_schema.IMAGES_FILE, tm_schema.IMAGES)
    t = t.select(["index", "key", "path", "source", "class_id", "keyword_ids", "label_ids", "label_weights"])
    return _carrying(t, record)


def labels_record(labels_dir: str | Path) -> dict:
    """What shards record of the finished text-mining folder ``labels_dir`` (``schema.LABEL_KEYS``)."""
    marker = tm_schema.read_complete(labels_dir)
    return {"labels": str(Path(labels_dir).resolve()), "labels_fingerprint": marker["fingerprint"],
            "classes_fingerprint": marker["classes_fingerprint"]}


def _carrying(samples: pa.Table, record: dict) -> pa.Table:
    meta = dict(samples.schema.metadata or {})
    meta.update({schema.META_LABELS[k]: v.encode() for k, v in record.items()})
    return samples.replace_schema_metadata(meta)


def samples_labels(samples: pa.Table) -> dict:
    """The labels record a sample table carries (``train_samples``); all None for val samples."""
    meta = samples.schema.metadata or {}
    return {k: (meta[schema.META_LABELS[k]].decode() if schema.META_LABELS[k] in meta else None)
            for k in schema.LABEL_KEYS}


def _refuse_other_labels(what: str, split: str, done: dict, now: dict) -> None:
    """A part or split ``done`` (its report) from other labels than ``now`` is never taken as done;
    a train part from before fingerprints neither (its labels are unknown). Val samples come from
    the release, so a val part done without labels, or now run without, is no conflict."""
    if "labels_fingerprint" not in done:
        if split != "train":
            return
        raise schema.ShardsMismatch(
            f"{what} records no labels fingerprint (written before webtag recorded one), so it cannot be "
            f"taken as done for {now['labels']}: write these shards to a new --out folder")
    old, new = done["labels_fingerprint"], now["labels_fingerprint"]
    if old is None or new is None or old == new:
        return
    raise schema.ShardsMismatch(
        f"{what} was built from labels {done.get('labels')} (fingerprint {tm_schema.short(old)}), not from "
        f"{now['labels']} (fingerprint {tm_schema.short(new)}): write these shards to a new --out folder, "
        f"or shard with --labels {done.get('labels')}")


def _with_labels(sch: pa.Schema, labels: dict) -> pa.Schema:
    meta = dict(sch.metadata or {})
    meta.update({schema.META_LABELS[k]: v.encode() for k, v in labels.items() if v is not None})
    return sch.with_metadata(meta)
