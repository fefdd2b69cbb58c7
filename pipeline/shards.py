"""Shard writer: training (and validation) images with their labels -> WebDataset tar shards.

One part writes the samples of a contiguous slice of the split's sample list into shards named
``<split>-<part>-<n>.tar``. Each shard is written under a hidden name and renamed when closed, so a
visible shard is always complete; the part's manifest (``_parts/part-I-of-N.parquet``) and report
(``part-I-of-N.json``, written last) mark it done, and rerunning a done part is a no-op. ``merge``
then writes the split's ``manifest.parquet``, ``report.json`` and, last, ``sizes.json`` (the
split's completion marker). A PNG, GIF or WebP (often saved as ``.jpg`` by web crawls) is
re-encoded to JPEG (counted as ``reencoded``); images that are missing, empty, truncated or do not
decode are skipped and counted (or stop the part with ``on_error="fail"``): a shard never holds a
broken sample. Every part, report and manifest records the labels it was built from (the
text-mining folder's fingerprint, ``schema.LABEL_KEYS``): a part or split done from other labels
is refused, never taken as done.

The evaluation splits (val, test, imagenet_val; their sample tables in eval_splits.py) are packed
the same way; their samples' .json add the list index and keep the list entry as ``path``, and
their reports record the list (``schema.LIST_KEYS``) and any class subset (schema.py says what).
``ShardConfig.classes`` / ``sources`` cut the splits to a class subset / the train images of some
sources (mini-WebVision: ``classes=0:50 sources=[google]``).
"""
from __future__ import annotations

import functools
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Literal, Optional, Union
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import webdataset as wds

from text_mining.config import check_class_spec
from text_mining.webvision import SOURCES
from webtag.atomic import PendingFile, atomic_file, remove_stale_tmp, write_text_atomic
from webtag.config import at_least, between, check
from webtag.parallel import part_range, run_parts
from webtag.problems import Problems
from webtag.storage import is_url, location

from . import eval_splits, release_tars, schema
from .shard_labels import (
    _carrying, _refuse_other_labels, _with_labels, labels_record, samples_labels, train_samples)
from .images import BadImage, as_jpeg, resize_shorter
from .timm_info import write_timm_info
from .webdata_input import read_image

log = logging.getLogger(__name__)

SHARD_KINDS = {
    "missing_image": "image file not found (skipped)",
    "empty_image": "image file of 0 bytes (skipped)",
    "truncated_image": "JPEG without its end marker (skipped)",
    "not_image": "file is no image format PIL reads: HTML error page, unknown data (skipped)",
    "bad_image": "image that does not decode (skipped)",
    **release_tars.ARCHIVE_KINDS,
}
PART_RE = re.compile(r"^part-(\d{5})-of-(\d{5})\.json$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """'1GB', '500MB', '64KiB', 1000 -> bytes (decimal units; KiB/MiB/GiB binary)."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"cannot read {text!r} as a size (e.g. 1GB, 500MB)")
    unit = (m.group(2) or "").lower()
    base = 1024 if "i" in unit else 1000
    power = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit[:1] if unit else ""]
    return int(float(m.group(1)) * base ** power)


@dataclass
class ShardConfig:
    max_size: int = 1_000_000_000       # bytes of sample data per shard
    max_count: int = 10_000             # samples per shard
    resize_shorter: int | None = None   # re-encode images whose shorter side is larger
    quality: int = 90                   # JPEG quality when re-encoding
    on_error: Literal["skip", "fail"] = "skip"
    # how JPEGs are checked (pipeline/images.py): fast, structure and headers (whatever passes, the
    # loader decodes); full, and a decode (libjpeg judges the headers itself, ~4x the CPU)
    validate: Literal["full", "fast", "none"] = "fast"
    # class subset of the release, as text mining's reader.classes ("0:50" or a list of ids; None:
    # the classes of --labels, or all): val and imagenet_val keep those classes; train needs labels
    # mined with the same subset
    classes: Optional[Union[list[int], str]] = None
    sources: Optional[list[str]] = None    # train images of these sources only; None: all
    imagenet_strict: bool = False          # refuse ImageNet-val synsets the class list lacks (else drop)

    def __post_init__(self) -> None:
        check(self, max_size=at_least(1), max_count=at_least(1), resize_shorter=at_least(1),
              quality=between(1, 100))
        check_class_spec("classes", self.classes)
        for src in self.sources or ():
            if src not in SOURCES:
                from webtag.config import InvalidValue
                raise InvalidValue("sources", self.sources, f"sources among {', '.join(SOURCES)}")


class _ShardSink:
    """Rolls over tar shards by size and count; each appears under its final name only when closed."""

    def __init__(self, folder: Path, prefix: str, max_size: int, max_count: int):
        self.folder, self.prefix = folder, prefix
        self.max_size, self.max_count = max_size, max_count
        self.seq = -1
        self.writer = self.pending = self.name = None
        self.count = self.size = 0
        self.sizes: dict[str, int] = {}

    def _open(self) -> None:
        self.seq += 1
        self.name = f"{self.prefix}-{self.seq:04d}.tar"
        self.pending = PendingFile(self.folder / self.name)
        # a fixed integer mtime: reruns are byte-identical, and no pax header per member (a float
        # mtime makes tarfile write one, doubling the headers that readers parse)
        self.writer = wds.TarWriter(str(self.pending.tmp), mtime=0)
        self.count = self.size = 0

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.pending.commit()
        self.sizes[self.name] = self.count
        self.writer = None

    def abort(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()   # on a full disk this flush fails again
            except OSError:
                pass
            finally:
                self.pending.abort()
                self.writer = None

    def write(self, sample: dict, nbytes: int) -> tuple[str, int]:
        if self.writer is not None and (self.count >= self.max_count or
                                        (self.count and self.size + nbytes > self.max_size)):
            self.close()
        if self.writer is None:
            self._open()
        self.writer.write(sample)
        pos = self.count
        self.count += 1
        self.size += nbytes
        return self.name, pos


def write_part(split: str, samples: pa.Table, root: str | Path, out: str | Path, cfg: ShardConfig,
               part: int, num_parts: int, images_root: str | Path | None = None) -> dict:
    """Write the shards of one part of a split; a no-op when the part is already done."""
    split_dir = Path(out) / split
    parts_dir = split_dir / "_parts"
    stem = f"part-{part:05d}-of-{num_parts:05d}"
    report_path = parts_dir / f"{stem}.json"
    record = samples_labels(samples)
    check_out(split_dir, split, record)
    if report_path.exists():
        done = json.loads(report_path.read_text())
        log.info("%s shard part %d/%d already done", split, part, num_parts)
        return done
    parts_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(split_dir)
    remove_stale_tmp(parts_dir)
    t0 = time.perf_counter()
    img_root = location(images_root or root)   # a local folder, or web data at a URL (webtag.storage)
    problems = Problems(SHARD_KINDS, on_error=cfg.on_error)
    archives = (release_tars.find_archives(img_root)
                if split == "train" and "file" not in samples.column_names and isinstance(img_root, Path) else [])
    if archives:   # the release's tar files: this part reads whole archives (pipeline/release_tars.py)
        lo, hi = release_tars.part_archives(archives, part, num_parts)
        index, held = release_tars.PathIndex(samples.column("path")), np.zeros(samples.num_rows, dtype=bool)
        images = release_tars.archive_images(samples, index, archives, part, num_parts, problems, held)
    else:
        lo, hi = part_range(samples.num_rows, part, num_parts)
        images = _files(samples.slice(lo, hi - lo).to_pylist(), img_root)
    sink = _ShardSink(split_dir, f"{split}-{part:05d}", cfg.max_size, cfg.max_count)
    manifest = {name: [] for name in schema.MANIFEST.names}
    n_resized = n_reencoded = 0
    try:
        lists = eval_splits.table_lists(samples)
        for row, path, data in images:
            if data is None:
                problems.add("missing_image", str(path), None, f"sample {row['key']}: not found")
                continue
            try:
                data, reencoded = as_jpeg(data, cfg.quality, cfg.validate)
            except BadImage as exc:
                problems.add(exc.kind, str(path), None, f"sample {row['key']}: {exc}")
                continue
            n_reencoded += reencoded
            if cfg.resize_shorter:
                new = resize_shorter(data, cfg.resize_shorter, cfg.quality)
                n_resized += new is not data
                data = new
            key = schema.sample_key(row["index"])
            labels = {
                "key": row["key"], "index": row["index"], "path": row["path"], "source": row["source"],
                "class_id": row["class_id"], "keyword_ids": row["keyword_ids"],
                "label_ids": row["label_ids"], "label_weights": [float(w) for w in row["label_weights"]],
            }
            if schema.LIST_INDEX in row:
                labels[schema.LIST_INDEX] = row[schema.LIST_INDEX]
            shard, pos = sink.write({"__key__": key, schema.IMAGE_EXT: data,
                                     schema.CLASS_EXT: str(row["class_id"]),
                                     schema.LABELS_EXT: json.dumps(labels, separators=(",", ":"))},
                                    len(data))
            for name, value in (("shard", shard), ("position", pos), ("key", key), ("index", row["index"]),
                                ("class_id", row["class_id"]), ("keyword_ids", row["keyword_ids"]),
                                ("source", row["source"]), ("bytes", len(data))):
                manifest[name].append(value)
        sink.close()
        report = {"split": split, "part": part, "num_parts": num_parts, "start": lo, "end": hi,
                  "samples": len(manifest["key"]), "skipped": problems.total(), "resized": n_resized,
                  "reencoded": n_reencoded, "shards": sink.sizes, "bytes": int(sum(manifest["bytes"])),
                  **record, **lists, "problems": problems.to_dict(),
                  "seconds": round(time.perf_counter() - t0, 3)}
        if archives:   # what the merge needs to name the images no archive held
            release_tars.save_held(parts_dir, stem, held, samples, index, cfg.on_error)
        with atomic_file(parts_dir / f"{stem}.parquet") as tmp:
            pq.write_table(pa.table(manifest, schema=_with_labels(schema.MANIFEST, record)), tmp)
        write_text_atomic(report_path, json.dumps(report, indent=1))
    except BaseException:
        sink.abort()
        for name in sink.sizes:   # shards of this unfinished part: no report will list them
            (split_dir / name).unlink(missing_ok=True)
        (parts_dir / f"{stem}.parquet").unlink(missing_ok=True)
        raise
    log.info("%s part %d/%d: %d samples in %d shards, %d skipped, %.1fs", split, part, num_parts,
             report["samples"], len(sink.sizes), report["skipped"], report["seconds"])
    return report


def _files(rows: list[dict], img_root):
    """(row, path, bytes or None when missing): the images as files, or img2dataset tar members."""
    for row in rows:
        if "file" in row:   # evaluation lists: where the release keeps the image (a path or a URL)
            path = location(row["file"])
        else:   # relative to the images root, or a URL of its own (s3://, gs://, https://)
            path = location(row["path"]) if is_url(row["path"]) else img_root / row["path"]
        try:
            yield row, path, read_image(path)
        except FileNotFoundError:
            yield row, path, None


def check_out(split_dir: Path, split: str, labels: dict) -> None:
    """Refuse to add to a split folder whose finished parts or merged split were built from other
    labels (ShardsMismatch naming both)."""
    done = [p for p in sorted((split_dir / "_parts").glob("part-*.json")) if PART_RE.match(p.name)]
    if (split_dir / schema.REPORT_FILE).is_file():
        done.append(split_dir / schema.REPORT_FILE)
    for path in done:
        _refuse_other_labels(f"{path}", split, json.loads(path.read_text()), labels)


def merge_split(out: str | Path, split: str) -> dict:
    """Manifest, sizes.json and report of a split whose parts are all done."""
    split_dir = Path(out) / split
    parts_dir = split_dir / "_parts"
    found = sorted((int(m.group(1)), int(m.group(2)), p) for p in parts_dir.glob("part-*.json")
                   if (m := PART_RE.match(p.name)))
    if not found:
        raise FileNotFoundError(f"no finished shard parts in {parts_dir}")
    counts = {n for _, n, _ in found}
    if len(counts) != 1:
        raise ValueError(f"{parts_dir} holds parts of different part counts {sorted(counts)}")
    n = counts.pop()
    missing = sorted(set(range(n)) - {i for i, _, _ in found})
    if missing:
        raise ValueError(f"{split} shard parts {missing} of {n} are not finished in {parts_dir}")
    reports = [json.loads(p.read_text()) for _, _, p in found]
    labels = {k: reports[0].get(k) for k in schema.LABEL_KEYS}
    for (_, _, p), r in zip(found, reports):
        _refuse_other_labels(f"{split} shard part {p}", split, r, labels)
    tables = [pq.read_table(parts_dir / p.name.replace(".json", ".parquet")) for _, _, p in found]
    sizes = {name: c for r in reports for name, c in r["shards"].items()}
    problems = Problems(SHARD_KINDS)
    for r in reports:
        problems.merge(r["problems"])
    release_tars.report_missing(parts_dir, [p.stem for _, _, p in found], problems)   # archives: what none held
    report = {"split": split, "num_parts": n, "samples": sum(r["samples"] for r in reports),
              "shards": len(sizes), "bytes": sum(r["bytes"] for r in reports),
              "resized": sum(r["resized"] for r in reports), "reencoded": sum(r.get("reencoded", 0) for r in reports),
              "skipped": problems.total(), **labels,
              "problems": problems.to_dict(), "seconds": sum(r["seconds"] for r in reports)}
    meta = _with_labels(schema.MANIFEST, labels).metadata
    if "list_file" in reports[0]:   # an evaluation split: its list (schema.LIST_KEYS)
        report.update({k: reports[0][k] for k in ("list_file", "list_entries", "classes", "outside_classes")})
        report["list_skipped"] = report["list_entries"] - report["samples"]
        meta.update({schema.META_LIST[k]: str(report[k]).encode() for k in schema.LIST_KEYS})
    elif reports[0].get("classes") is not None:
        report["classes"] = reports[0]["classes"]
    manifest = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    with atomic_file(split_dir / schema.MANIFEST_FILE) as tmp:
        pq.write_table(manifest.replace_schema_metadata(meta), tmp)
    write_text_atomic(split_dir / schema.REPORT_FILE, json.dumps(report, indent=1))
    # last: sizes.json marks the split finished (split_folder, training and the loader need it)
    write_text_atomic(split_dir / schema.SIZES_FILE, json.dumps(sizes, indent=1))
    write_timm_info(out)   # <out>/_info.json: timm's --dataset wds/ reads the finished splits (pipeline.timm_info)
    log.info("%s: %d samples in %d shards (%.1f MB), %d skipped", split, report["samples"],
             report["shards"], report["bytes"] / 1e6, report["skipped"])
    return report


def split_samples(split: str, root: str | Path, labels_dir: str | Path | None, cfg: ShardConfig | None = None,
                  imagenet_val: str | Path | None = None, imagenet_labels: str | Path | None = None) -> pa.Table:
    """The sample table of a split: train from the labels, val and test from the release's lists,
    imagenet_val from the folder ``imagenet_val`` (eval_splits.py)."""
    cfg = cfg or ShardConfig()
    if split == "train":
        if labels_dir is None:
            raise ValueError("--labels (the text-mining output folder) is needed for the train split")
        samples = train_samples(labels_dir)
        _wnids, subset = eval_splits.class_list(root, labels_dir, cfg.classes)   # refuses other subsets
        meta = dict(samples.schema.metadata)
        if cfg.sources is not None:
            keep = pc.is_in(samples.column("source"), value_set=pa.array(cfg.sources))
            samples = samples.filter(keep)
        if subset is not None:
            meta[eval_splits.META_SUBSET] = json.dumps(subset).encode()
        return samples.replace_schema_metadata(meta)
    if split in ("val", "test"):
        samples = eval_splits.list_samples(split, root, labels_dir, cfg.classes)
    elif split == schema.IMAGENET_VAL_SPLIT:
        if imagenet_val is None:
            raise ValueError("the imagenet_val split needs --imagenet-val DIR")
        samples = eval_splits.imagenet_samples(imagenet_val, root, labels_dir, cfg.classes, imagenet_labels,
                                               cfg.imagenet_strict)
    else:
        raise ValueError(f"unknown split {split!r} ({', '.join(schema.SPLITS + (schema.IMAGENET_VAL_SPLIT,))})")
    # the release's own labels; those given to the run are recorded beside them
    return _carrying(samples, labels_record(labels_dir)) if labels_dir is not None else samples


def release_splits(root: str | Path) -> list[str]:
    """The splits ``--split all`` packs: train, val, and test when the release lists it."""
    return [s for s in schema.SPLITS if s not in schema.SPLIT_LISTS or (location(root) / schema.SPLIT_LISTS[s]).is_file()]


def _key(value):
    return tuple(value) if isinstance(value, list) else value


@functools.lru_cache(maxsize=2)
def _cached_samples(split: str, root: str, labels_dir: str | None, classes, sources, strict: bool,
                    imagenet_val: str | None, imagenet_labels: str | None) -> pa.Table:
    cfg = ShardConfig(classes=list(classes) if isinstance(classes, tuple) else classes,
                      sources=list(sources) if sources is not None else None, imagenet_strict=strict)
    return split_samples(split, root, labels_dir, cfg, imagenet_val, imagenet_labels)


def _part_job(split, root, labels_dir, out, cfg, part, num_parts, images_root, imagenet=(None, None)) -> dict:
    """One part: the sample table is read where the part runs (once per process), not pickled
    to a worker with every task."""
    samples = _cached_samples(split, root, labels_dir, _key(cfg.classes), _key(cfg.sources), cfg.imagenet_strict,
                              *imagenet)
    return write_part(split, samples, root, out, cfg, part, num_parts, images_root)


def shard_all(root: str | Path, labels_dir: str | Path | None, out: str | Path, cfg: ShardConfig,
              splits=None, workers: int = 1, num_parts: int | None = None,
              images_root: str | Path | None = None, imagenet_val: str | Path | None = None,
              imagenet_labels: str | Path | None = None) -> dict:
    """Every part of every split on this machine (worker processes), then the merges. ``splits``
    None: ``release_splits``, and imagenet_val when ``imagenet_val`` is given."""
    if splits is None:
        splits = release_splits(root) + ([schema.IMAGENET_VAL_SPLIT] if imagenet_val else [])
    imagenet = (str(imagenet_val) if imagenet_val else None, str(imagenet_labels) if imagenet_labels else None)
    num_parts = num_parts or max(1, workers)
    labels = str(labels_dir) if labels_dir else None
    record = labels_record(labels) if labels else dict.fromkeys(schema.LABEL_KEYS)
    for split in splits:   # before any part runs: refuse an --out of other labels
        check_out(Path(out) / split, split, record)
    reports = {}
    for split in splits:
        run_parts(_part_job, [(split, str(root), labels, out, cfg, part, num_parts, images_root, imagenet)
                              for part in range(num_parts)], workers, f"shard {split}")
        reports[split] = merge_split(out, split)
    return reports
