"""Map step 1, ``count``: read one part of the release, extract keywords, count them.

Writes ``_work/count/part-I-of-N/`` with
- ``extract.parquet``: one row per image (index, key, path, source, query_id, class_id, the image's
  distinct keywords and how often each occurs in its text, has_text), written a row group at a
  time (``reduce.memory_mb`` bounds the rows held);
- ``counts.parquet``: per keyword, occurrences and images;
- ``report.json``: counts, bad input, the tagger used, timing.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from webtag.atomic import atomic_dir
from webtag.parallel import part_range

from . import keyword_table
from .config import TextMiningConfig
from .keywords import KeywordExtractor
from .layout import Layout
from .problems import Problems
from .schema import META_TAGGER
from .spill import budget_rows
from .webdata import open_input
from .wordnet import load_wordnet

log = logging.getLogger(__name__)

EXTRACT_SCHEMA = pa.schema([
    ("index", pa.int64()), ("key", pa.string()), ("path", pa.string()), ("source", pa.string()),
    ("query_id", pa.int32()), ("class_id", pa.int32()), ("keywords", pa.list_(pa.string())),
    ("keyword_counts", pa.list_(pa.int32())), ("has_text", pa.bool_()),
])

# memory of one record's extract row held as Python lists (~18 distinct keywords): an estimate
COUNT_ROW_BYTES = 4096
# records whose tokens are counted at once (KeywordTable.add): ~30 tokens each
CHUNK_RECORDS = 8192
SCALARS = ("index", "key", "path", "source", "query_id", "class_id", "has_text")


def _identity(items: list[str]) -> list[str]:
    return items


def progress(iterable, total: int, desc: str, enabled: bool = True):
    """A progress bar; sparse updates when stderr is not a terminal (Slurm logs)."""
    tty = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit="rec", disable=not enabled,
                mininterval=0.5 if tty else 30, dynamic_ncols=tty, leave=tty)


def count_part(root: str | Path, out: str | Path, cfg: TextMiningConfig, part: int, num_parts: int,
               show_progress: bool = True) -> dict:
    layout = Layout(out)
    done = layout.finished_part("count", part, num_parts)
    if done is not None:
        return done
    dest = layout.part_dir("count", part, num_parts)
    layout.check_config(cfg)
    layout.prepare("count")
    t0 = time.perf_counter()
    release = open_input(root, cfg.reader, cfg.wordnet.nltk_data)
    wn = load_wordnet(cfg.wordnet.nltk_data)
    extractor = KeywordExtractor(cfg.keywords, wn)
    problems = Problems(cfg.reader.on_error)
    start, end = part_range(release.total, part, num_parts)

    extract_schema = EXTRACT_SCHEMA.with_metadata({META_TAGGER: extractor.tagger_name.encode()})
    batch_rows = budget_rows(cfg.reduce.memory_mb, COUNT_ROW_BYTES)
    # a context-free filter decides each distinct token of a chunk once (KeywordTable); NLTK's
    # tagger needs each record's text: its keywords are the items, taken as they are
    if extractor.context_free:
        items_of, resolve = extractor.tokens, extractor.pos.keywords_of
    else:
        items_of, resolve = extractor.extract, _identity
    table = keyword_table.KeywordTable()
    n_text = n_rows = 0
    records = release.iter_records(start, end, problems)
    with atomic_dir(dest) as tmp:
        # the extract is written a row group of batch_rows records at a time (reduce.memory_mb)
        with pq.ParquetWriter(tmp / "extract.parquet", extract_schema) as writer:
            held: list[pa.RecordBatch] = []
            held_rows = 0
            cols = {name: [] for name in SCALARS}
            items: list[str] = []
            lengths: list[int] = []

            def chunk() -> None:
                nonlocal held_rows
                keywords, keyword_counts = table.add(items, lengths, resolve)
                arrays = {name: pa.array(cols[name], EXTRACT_SCHEMA.field(name).type) for name in SCALARS}
                arrays.update(keywords=keywords, keyword_counts=keyword_counts)
                held.append(pa.record_batch([arrays[f.name] for f in EXTRACT_SCHEMA], schema=extract_schema))
                held_rows += len(lengths)
                for v in (*cols.values(), items, lengths):
                    v.clear()

            def flush() -> int:
                nonlocal held_rows
                t = pa.Table.from_batches(held, schema=extract_schema)
                writer.write_table(t, row_group_size=max(1, t.num_rows))
                held.clear()
                rows, held_rows = held_rows, 0
                return rows

            for rec in progress(records, end - start, f"count {part}/{num_parts}", show_progress):
                got = items_of(rec.title, rec.description, rec.tags)
                items += got
                lengths.append(len(got))
                has_text = bool(rec.title.strip() or rec.description.strip() or rec.tags)
                n_text += has_text
                cols["index"].append(rec.index)
                cols["key"].append(rec.key)
                cols["path"].append(rec.path)
                cols["source"].append(rec.source)
                cols["query_id"].append(rec.query_id)
                cols["class_id"].append(rec.class_id)
                cols["has_text"].append(has_text)
                if len(lengths) >= min(CHUNK_RECORDS, batch_rows - held_rows):
                    chunk()
                    if held_rows >= batch_rows:
                        n_rows += flush()
            if lengths:
                chunk()
            if held_rows or not n_rows:
                n_rows += flush()
        counts = table.table()
        words = counts.num_rows
        report = {
            "part": part, "num_parts": num_parts, "start": start, "end": end,
            "images": n_rows, "with_text": n_text,
            "keyword_occurrences": table.total_occurrences(), "distinct_keywords": words,
            "tagger": extractor.tagger_name, "release_version": release.version,
            "query_map_base": release.map_base, "problems": problems.to_dict(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        pq.write_table(counts, tmp / "counts.parquet")
        (tmp / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    log.info("count part %d/%d: %d images, %d distinct keywords, %d problems, %.1fs",
             part, num_parts, n_rows, words, problems.total(), report["seconds"])
    return report
