"""Submission files in the WebVision challenge's form, and what is written beside them.

A submission has one line per image of the split's file list (``info/val_filelist.txt``,
``info/test_filelist.txt``), in the list's order, keyed by the list's own file name, then the
top-5 class ids, best first::

    val000001.jpg 9 6 1 3 5

The names come from the shards' sample records (``path``: the list entry; a leading
``<split>_images[_256]/`` folder, as older shards recorded it, is taken off) and the order from
their ``list_index`` (``pipeline.schema.LIST_INDEX``; ``index`` in older shards: the same
position). The count is checked against the list: the split's report counts every list entry,
packed or skipped (``list_entries``), and an image without a prediction (skipped
when sharding, or in a shard that is missing) is an error naming the first positions, and
nothing is written. Optional beside it: a probabilities file (the top-k class ids and their
scores per image, ``.npz`` or ``.parquet``) and a result JSON (models, checkpoints, split,
resolution and crop, count, time)."""
from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import numpy as np

from pipeline import schema
from webtag.atomic import atomic_file

LIST_INDEX = getattr(schema, "LIST_INDEX", "list_index")
_IMAGE_FOLDER = re.compile(r"^[A-Za-z0-9]+_images(?:_256)?/")


class SubmissionError(ValueError):
    """The predictions do not cover the split's list."""


def list_name(record: dict) -> str:
    """The file-list name of a sample from its shard record."""
    return _IMAGE_FOLDER.sub("", str(record.get("path") or record.get("key")), count=1)


def list_names(split_dir: str | Path) -> dict[int, str]:
    """List position (the samples' ``index``) -> list name, read from the label records of the
    split's shards (tarfile skips the image bytes)."""
    split_dir = Path(split_dir)
    names: dict[int, str] = {}
    for shard in schema.read_sizes(split_dir):
        try:
            with tarfile.open(split_dir / shard, "r:") as tar:
                for member in tar:
                    if member.isfile() and member.name.endswith("." + schema.LABELS_EXT):
                        rec = json.loads(tar.extractfile(member).read())
                        names[int(rec.get(LIST_INDEX, rec["index"]))] = list_name(rec)
        except (OSError, tarfile.TarError, ValueError, KeyError) as exc:
            raise SubmissionError(f"{split_dir / shard}: cannot read the images' list names ({exc})") from None
    return names


def list_count(split_dir: str | Path) -> int:
    """How many entries the split's file list has: the report's packed samples plus the skipped."""
    report = json.loads((Path(split_dir) / schema.REPORT_FILE).read_text(encoding="utf-8"))
    if isinstance(report.get("list_entries"), int):   # pipeline.schema.LIST_KEYS
        return report["list_entries"]
    return int(report["samples"]) + int(report.get("skipped", 0))


def check_complete(split_dir: str | Path, positions) -> int:
    """The list's size, when ``positions`` (the predicted images' list positions) are exactly
    every position of the list; SubmissionError otherwise."""
    n = list_count(split_dir)
    got = set(int(p) for p in positions)
    missing = sorted(set(range(n)) - got)
    extra = sorted(got - set(range(n)))
    if missing or extra:
        what = []
        if missing:
            what.append(f"{len(missing)} of its {n} images have no prediction (list lines "
                        f"{', '.join(str(i + 1) for i in missing[:5])}{' ...' if len(missing) > 5 else ''}: "
                        f"skipped when sharding, see {Path(split_dir) / schema.REPORT_FILE}, or their shard is missing)")
        if extra:
            what.append(f"{len(extra)} predictions are for positions beyond its {n} entries")
        raise SubmissionError(f"{split_dir}: the submission would not match the file list: {'; '.join(what)}")
    return n


def write_submission(out: str | Path, names: dict[int, str], top: dict[int, list[int]]) -> int:
    """``top``: list position -> class ids, best first. One line per position, in list order;
    KeyError for a position without a name (nothing is written then)."""
    with atomic_file(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for idx in sorted(top):
            fh.write(names[idx] + " " + " ".join(map(str, top[idx])) + "\n")
    return len(top)


PROBS_SUFFIXES = (".npz", ".parquet")


def check_probs_path(path: str | Path) -> None:
    """A probabilities file name must say its format (before anything is computed or written)."""
    if Path(path).suffix not in PROBS_SUFFIXES:
        raise ValueError(f"--probs {path}: give a .npz or a .parquet file")


def write_probabilities(out: str | Path, names: list[str], ids: np.ndarray, scores: np.ndarray) -> None:
    """Top-k class ids (N x k) and their scores per image, in list order: ``.npz`` (arrays
    ``names``, ``class_ids``, ``scores``) or ``.parquet`` (columns ``name``, ``class_ids``, ``scores``)."""
    out = Path(out)
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        table = pa.table({"name": names, "class_ids": pa.array(ids.astype(np.int32).tolist(), pa.list_(pa.int32())),
                          "scores": pa.array(scores.astype(np.float32).tolist(), pa.list_(pa.float32()))})
        with atomic_file(out) as tmp:
            pq.write_table(table, tmp)
    elif out.suffix == ".npz":
        with atomic_file(out) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, names=np.array(names), class_ids=ids.astype(np.int32), scores=scores.astype(np.float32))
    else:
        check_probs_path(out)


def result_path(submission: str | Path) -> Path:
    """The result JSON beside a submission: ``sub.txt`` -> ``sub.json``."""
    p = Path(submission)
    return p.with_name(p.stem + ".result.json") if p.suffix == ".json" else p.with_suffix(".json")
