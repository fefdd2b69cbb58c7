"""Final step, ``merge``: the public outputs of the stage.

Concatenates the ``tag`` parts into ``images.parquet`` (train-list order), publishes the
vocabulary, class and keyword-class tables, and writes ``report.json``, ``report.md`` and
``keyword_frequency.png``, then ``complete.json`` last: the completion marker with the folder's
fingerprint (``schema.fingerprint``), which every later stage requires. A folder with
``report.json`` but no marker (killed just before it, or made before markers existed) is
finished by writing the marker over its tables.
"""
from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from webtag.atomic import atomic_file, write_text_atomic
from webtag.config import dump_config
from webtag.storage import is_url

from . import schema
from .config import TextMiningConfig
from .layout import Layout, OutputMismatch
from .problems import Problems
from .report import keyword_plot, markdown, weight_distribution

log = logging.getLogger(__name__)


ROW_GROUP = 100_000   # rows per row group of images.parquet


def concat_images(files: list[Path], dest: Path, rows: int = ROW_GROUP) -> np.ndarray:
    """Write the tag parts' images tables one after the other into ``dest`` in row groups of
    ``rows`` (each part's rows split as writing the part whole would: the same bytes), holding one
    row group at a time. Returns the histogram of keywords per image (index: keyword count)."""
    hist = np.zeros(1, np.int64)
    with pq.ParquetWriter(dest, pq.read_schema(files[0])) as writer:
        for f in files:
            held: list = []
            n_held = 0
            if pq.read_metadata(f).num_rows == 0:   # as a whole empty table is written: one empty group
                writer.write_table(pq.read_table(f), row_group_size=rows)
                continue
            batches = pq.ParquetFile(f).iter_batches(batch_size=rows)
            for batch in itertools.chain(batches, [None]):
                if batch is not None:
                    held.append(batch)
                    n_held += len(batch)
                while n_held >= rows or (batch is None and n_held):
                    table = pa.Table.from_batches(held).combine_chunks()
                    group, rest = table.slice(0, rows), table.slice(rows)
                    writer.write_table(group, row_group_size=rows)
                    counts = np.bincount(pc.list_value_length(group["keyword_ids"]).to_numpy(zero_copy_only=False))
                    if len(counts) > len(hist):
                        hist = np.pad(hist, (0, len(counts) - len(hist)))
                    hist[: len(counts)] += counts
                    held, n_held = rest.to_batches(), len(rest)
    return hist


def merge(root: str | Path, out: str | Path, cfg: TextMiningConfig, timings: dict | None = None) -> dict:
    layout = Layout(out)
    final = layout.out / schema.REPORT_JSON
    if (layout.out / schema.COMPLETE_FILE).exists():
        log.info("merge already done (%s)", layout.out / schema.COMPLETE_FILE)
        return json.loads(final.read_text())
    if final.exists():   # every table was published before report.json: only the marker is missing
        report = json.loads(final.read_text())
        marker = schema.write_complete(layout.out, "text_mining merge")
        log.info("merge: %s had no %s; written (fingerprint %s)", layout.out, schema.COMPLETE_FILE,
                 schema.short(marker["fingerprint"]))
        return report
    layout.check_config(cfg)
    n_count, count_parts = layout.require_all("count", "merging")
    n_tag, tag_parts = layout.require_all("tag", "merging")
    if n_tag != n_count:
        raise OutputMismatch(f"count has {n_count} parts but tag has {n_tag}")
    vocab_dir = layout.vocabulary_dir
    layout.prepare()
    t0 = time.perf_counter()

    with atomic_file(layout.out / schema.IMAGES_FILE) as tmp:
        kw_hist = concat_images([p / "images.parquet" for p in tag_parts], tmp)
    for name in (schema.VOCABULARY_FILE, schema.CLASSES_FILE, schema.KEYWORD_CLASSES_FILE):
        with atomic_file(layout.out / name) as tmp:
            shutil.copyfile(vocab_dir / name, tmp)

    count_reports = [json.loads((p / "report.json").read_text()) for p in count_parts]
    tag_reports = [json.loads((p / "report.json").read_text()) for p in tag_parts]
    vocab_report = json.loads((vocab_dir / "report.json").read_text())
    problems = Problems()
    for r in count_reports:
        problems.merge(r["problems"])
    problems.merge(vocab_report["problems"])

    images = sum(r["images"] for r in tag_reports)
    vocab_df = pq.read_table(layout.out / schema.VOCABULARY_FILE, columns=["df"])["df"].to_numpy()
    stats = {
        "images": images,
        "train_list_lines": count_reports[-1]["end"],
        "with_text": sum(r["with_text"] for r in count_reports),
        "with_keywords": sum(r["with_keywords"] for r in tag_reports),
        "classes": pq.read_metadata(layout.out / schema.CLASSES_FILE).num_rows,
        "distinct_keywords": vocab_report["distinct_keywords"],
        "vocabulary_size": vocab_report["vocabulary_size"],
        "dropped_most_common": vocab_report["dropped_most_common"],
        "dropped_over_max_df_count": vocab_report["dropped_over_max_df_count"],
        "dropped_rare_count": vocab_report["dropped_rare_count"],
        "dropped_over_max_size_count": vocab_report["dropped_over_max_size_count"],
        "mean_keywords_per_image": int(kw_hist @ np.arange(len(kw_hist))) / images if images else 0.0,
        "mean_keywords_per_image_before_filter": (
            sum(r["keyword_occurrences"] for r in count_reports) / max(1, sum(r["images"] for r in count_reports))),
        "own_class_top1_share": sum(r["own_class_top1"] for r in tag_reports) / max(1, images),
        "own_class_top5_share": sum(r["own_class_top5"] for r in tag_reports) / max(1, images),
        "mean_top1_weight": sum(r["top1_weight_sum"] for r in tag_reports) / max(1, images),
        "label_weights": weight_distribution(layout.out / schema.IMAGES_FILE),
        "duplicates_dropped": vocab_report["duplicates"],
    }
    info = schema.fingerprint(layout.out)   # the tables are all published
    seconds = dict(timings or {})
    seconds.setdefault("count_parts_sum", round(sum(r["seconds"] for r in count_reports), 3))
    seconds.setdefault("vocabulary", vocab_report["seconds"]["total"])
    seconds.setdefault("tag_parts_sum", round(sum(r["seconds"] for r in tag_reports), 3))
    seconds["merge"] = round(time.perf_counter() - t0, 3)
    report = {
        "webvision": str(root) if is_url(root) else str(Path(root).resolve()),   # the input, as given
        "output": str(layout.out.resolve()),
        "release_version": count_reports[0]["release_version"],
        "query_map_base": count_reports[0]["query_map_base"],
        "tagger": vocab_report["tagger"],
        "num_parts": n_count,
        "schema_version": schema.SCHEMA_VERSION,
        "fingerprint": info["fingerprint"],
        "stats": stats,
        "problems": problems.to_dict(),
        "seconds": seconds,
    }
    with atomic_file(layout.out / schema.KEYWORD_PLOT) as tmp:
        keyword_plot(vocab_df, len(vocab_report["dropped_most_common"]), tmp, kw_hist)
    write_text_atomic(layout.out / schema.CONFIG_FILE, dump_config(cfg))
    write_text_atomic(layout.out / schema.REPORT_MD, markdown(report))
    write_text_atomic(final, json.dumps(report, indent=1))
    schema.write_complete(layout.out, "text_mining merge", info)   # last: the folder is complete
    log.info("text mining done: %d images, %d keywords, %.2f keywords/image, %d bad-input records -> %s",
             images, stats["vocabulary_size"], stats["mean_keywords_per_image"], problems.total(), layout.out)
    return report
