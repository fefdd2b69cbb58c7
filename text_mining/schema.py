"""The Parquet tables that text mining writes and later stages (pipeline, pretrain) read.

This module is the one definition of the boundary: column names, Arrow types and the file names
in a text-mining output folder. Import it; never restate a column name elsewhere.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from webtag.atomic import write_text_atomic
from webtag.digest import sha256_file

SCHEMA_VERSION = "1"

# File names in the output folder of `python -m text_mining run --out DIR`.
IMAGES_FILE = "images.parquet"
VOCABULARY_FILE = "vocabulary.parquet"
CLASSES_FILE = "classes.parquet"
KEYWORD_CLASSES_FILE = "keyword_classes.parquet"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
KEYWORD_PLOT = "keyword_frequency.png"
CONFIG_FILE = "config.yaml"
# Written last (by merge, and by finetune's pseudo-label into its new folder): the folder is
# complete, and this is its fingerprint. Later stages read no folder without it.
COMPLETE_FILE = "complete.json"
TABLE_FILES = (IMAGES_FILE, VOCABULARY_FILE, CLASSES_FILE, KEYWORD_CLASSES_FILE)   # what the fingerprint covers

# Schema-level metadata keys (bytes in Parquet).
META_TAGGER = b"webtag.tagger"            # which part-of-speech filter made the keywords
META_SCHEMA_VERSION = b"webtag.schema_version"
META_RELEASE = b"webtag.release"          # WebVision layout version detected ("1.0"/"2.0")
META_MEASURE = b"webtag.measure"          # the keyword-class similarity behind the label weights
_META_KEYS = {"tagger": META_TAGGER, "release": META_RELEASE, "measure": META_MEASURE}

IMAGES = pa.schema([
    pa.field("index", pa.int64(), nullable=False),          # position in the release's train list
    pa.field("key", pa.string(), nullable=False),           # unique sample key: path without extension
    pa.field("path", pa.string(), nullable=False),          # image path relative to the release root
    pa.field("source", pa.string(), nullable=False),        # "google" or "flickr"
    pa.field("query_id", pa.int32(), nullable=False),       # query id (as in info/queries*.txt)
    pa.field("query", pa.string(), nullable=False),         # the query's words, space separated
    pa.field("class_id", pa.int32(), nullable=False),       # 0-based class id (the noisy web label)
    pa.field("keyword_ids", pa.list_(pa.int32()), nullable=False),   # ids into vocabulary, WT-Set targets
    pa.field("label_ids", pa.list_(pa.int32()), nullable=False),     # LW-Set: class ids, weight-descending
    pa.field("label_weights", pa.list_(pa.float32()), nullable=False),  # LW-Set: weights, sum to 1
])

VOCABULARY = pa.schema([
    pa.field("keyword", pa.string(), nullable=False),
    pa.field("id", pa.int32(), nullable=False),             # 0..V-1, by document frequency descending
    pa.field("count", pa.int64(), nullable=False),          # occurrences in all text
    pa.field("df", pa.int64(), nullable=False),             # number of images whose text has it
])

CLASSES = pa.schema([
    pa.field("class_id", pa.int32(), nullable=False),
    pa.field("wnid", pa.string(), nullable=False),          # WordNet 3.0 id, e.g. n01440764
    pa.field("name", pa.string(), nullable=False),          # first word of the synset line
    pa.field("words", pa.list_(pa.string()), nullable=False),  # all words of the synset line
])

# The keyword x class similarity table behind the label weights (sparse top-k per keyword).
KEYWORD_CLASSES = pa.schema([
    pa.field("keyword_id", pa.int32(), nullable=False),
    pa.field("class_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("scores", pa.list_(pa.float32()), nullable=False),
])


def with_metadata(schema: pa.Schema, **meta: str) -> pa.Schema:
    """``schema`` with the schema version and ``meta`` under the META_* keys (``tagger=``,
    ``release=``, ``measure=``); another name is a KeyError."""
    merged = dict(schema.metadata or {})
    merged[META_SCHEMA_VERSION] = SCHEMA_VERSION.encode()
    for key, value in meta.items():
        if key not in _META_KEYS:
            raise KeyError(f"no text-mining table metadata {key!r} (known: {', '.join(_META_KEYS)})")
        merged[_META_KEYS[key]] = str(value).encode()
    return schema.with_metadata(merged)


def read_table(path: str | Path, schema: pa.Schema) -> pa.Table:
    """Read a text-mining table and check it has the expected columns and types."""
    table = pq.read_table(path)
    expected = {f.name: f.type for f in schema}
    got = {f.name: f.type for f in table.schema}
    missing = [n for n in expected if n not in got]
    wrong = [f"{n} ({got[n]} instead of {t})" for n, t in expected.items() if n in got and got[n] != t]
    if missing or wrong:
        raise ValueError(f"{path}: not a webtag table of the expected schema: "
                         f"missing {missing or 'none'}, wrong types {wrong or 'none'}")
    return table


def table_metadata(path: str | Path) -> dict[str, str]:
    """The ``webtag.*`` metadata of a Parquet file, as text."""
    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"webtag.")}


def read_report(folder: str | Path) -> dict:
    with open(Path(folder) / REPORT_JSON, encoding="utf-8") as fh:
        return json.load(fh)


class LabelsError(ValueError):
    """A text-mining folder that later stages must not read: unfinished, or changed since."""


def fingerprint(folder: str | Path) -> dict:
    """The identity of a text-mining output: sha256 of each table's bytes, and ``fingerprint``
    (over all tables) and ``classes_fingerprint`` (the class list alone: evaluation needs only
    that to agree) derived from them."""
    folder = Path(folder)
    files = {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
             for name in TABLE_FILES}
    whole = hashlib.sha256("".join(f"{n}:{files[n]['sha256']}\n" for n in TABLE_FILES).encode()).hexdigest()
    return {"fingerprint": whole, "classes_fingerprint": files[CLASSES_FILE]["sha256"], "files": files}


def write_complete(folder: str | Path, made_by: str, info: dict | None = None, **extra) -> dict:
    """Write ``complete.json`` (``info``: a ``fingerprint(folder)`` computed already) atomically;
    call it after every other file of the folder is written."""
    marker = {"schema_version": SCHEMA_VERSION, "made_by": made_by, **(info or fingerprint(folder)), **extra}
    write_text_atomic(Path(folder) / COMPLETE_FILE, json.dumps(marker, indent=1))
    return marker


def short(fp: str | None) -> str:
    """A fingerprint as messages show it."""
    return fp[:12] if fp else "none"


def read_complete(folder: str | Path) -> dict:
    """The completion marker of a text-mining folder, after checking the folder is finished and
    its tables are the size they were when it was written; a LabelsError says what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LabelsError(f"{folder} does not exist (a text-mining output folder was expected)")
    marker = folder / COMPLETE_FILE
    if not marker.is_file():
        missing = [n for n in (*TABLE_FILES, REPORT_JSON) if not (folder / n).is_file()]
        raise LabelsError(f"{folder} is not a finished text-mining output: {marker} is missing"
                          f"{' (and ' + ', '.join(missing) + ')' if missing else ''}; its merge did not finish: "
                          f"run `python -m text_mining merge --webvision ROOT --out {folder}` (the same command) again")
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
        files = info["files"]
        info["fingerprint"]
    except (ValueError, KeyError, TypeError) as exc:
        raise LabelsError(f"{marker}: not a text-mining completion marker ({exc})") from None
    for name, rec in files.items():
        path = folder / name
        if not path.is_file():
            raise LabelsError(f"{path} is missing but {marker} lists it: the folder changed after it was finished")
        if path.stat().st_size != rec["bytes"]:
            raise LabelsError(f"{path} is {path.stat().st_size} bytes but {marker} recorded {rec['bytes']}: "
                              "the folder changed after it was finished; run text mining into a new folder")
    return info
