"""The Parquet tables that text mining writes and later stages (pipeline, pretrain) read.

This module is the one definition of the boundary: column names, Arrow types and the file names
in a text-mining output folder. Import it; never restate a column name elsewhere.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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
