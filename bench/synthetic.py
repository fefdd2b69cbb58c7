"""Synthetic training data at WebVision's label scale, for the benchmarks: no text mining needed.

``make_synthetic(workdir, images, classes, keywords)`` writes
- ``release/train/NNNNNNNNN.jpg``: generated photos-like JPEGs, shorter side 256 (the resized
  WebVision release), aspect 3:4 to 4:3, quality 85 (about 20-30 KB);
- ``mined/``: the text-mining tables the shard writer and the trainer read (images, vocabulary,
  classes) with Zipf-distributed keywords (~5 per image) and label weights over the classes;
- ``shards/train/``: our WebDataset shards of them (``pipeline.shards.shard_all``).
Everything is deterministic in the seed and reused when already there.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema as shard_schema
from pipeline.shards import ShardConfig, shard_all
from text_mining import schema as tm
from webtag.atomic import atomic_file, remove_stale_tmp
from webtag.parallel import run_parts
from webvision_example import class_style, render_image


def _render_range(root: str, start: int, stop: int, classes: int, seed: int) -> int:
    for i in range(start, stop):
        path = Path(root) / "train" / f"{i:09d}.jpg"
        if path.exists():
            continue
        r = np.random.default_rng([seed, i])
        aspect = math.exp(r.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = (256, round(256 * aspect)) if aspect >= 1 else (round(256 / aspect), 256)
        img = render_image(class_style(seed, i % classes), w, h, r, noise=float(r.uniform(4.0, 16.0)))
        with atomic_file(path) as tmp:
            img.save(tmp, "JPEG", quality=85)
    return stop - start


def _tables(n: int, classes: int, keywords: int, seed: int) -> dict[str, pa.Table]:
    r = np.random.default_rng(seed)
    ranks = np.arange(1, keywords + 1, dtype=np.float64)
    p = 1.0 / ranks
    p /= p.sum()
    cls = (np.arange(n) % classes).astype(np.int32)
    kw, lid, lw = [], [], []
    for i in range(n):
        k = int(r.integers(2, 9))
        kw.append(sorted(set(r.choice(keywords, size=k, p=p).tolist())))
        others = r.integers(0, classes, size=3).tolist()
        ids = [int(cls[i])] + [c for c in others if c != cls[i]]
        w = np.sort(r.dirichlet(np.ones(len(ids))))[::-1]
        lid.append(ids)
        lw.append(w.astype(np.float32).tolist())
    images = pa.table({
        "index": pa.array(np.arange(n), pa.int64()),
        "key": [f"train/{i:09d}" for i in range(n)],
        "path": [f"train/{i:09d}.jpg" for i in range(n)],
        "source": ["google" if i % 2 else "flickr" for i in range(n)],
        "query_id": pa.array(cls, pa.int32()),
        "query": [f"query {c}" for c in cls],
        "class_id": pa.array(cls, pa.int32()),
        "keyword_ids": pa.array(kw, pa.list_(pa.int32())),
        "label_ids": pa.array(lid, pa.list_(pa.int32())),
        "label_weights": pa.array(lw, pa.list_(pa.float32())),
    }, schema=tm.IMAGES)
    vocabulary = pa.table({"keyword": [f"kw{i}" for i in range(keywords)],
                           "id": pa.array(np.arange(keywords), pa.int32()),
                           "count": pa.array(np.full(keywords, 10), pa.int64()),
                           "df": pa.array(np.full(keywords, 10), pa.int64())}, schema=tm.VOCABULARY)
    class_table = pa.table({"class_id": pa.array(np.arange(classes), pa.int32()),
                            "wnid": [f"n{i:08d}" for i in range(classes)],
                            "name": [f"class{i}" for i in range(classes)],
                            "words": [[f"class{i}"] for i in range(classes)]}, schema=tm.CLASSES)
    keyword_classes = tm.KEYWORD_CLASSES.empty_table()   # not read by pretraining
    return {tm.IMAGES_FILE: images, tm.VOCABULARY_FILE: vocabulary, tm.CLASSES_FILE: class_table,
            tm.KEYWORD_CLASSES_FILE: keyword_classes}


def make_synthetic(workdir: str | Path, images: int = 20000, classes: int = 5000, keywords: int = 35000,
                   seed: int = 0, workers: int | None = None, shard_count: int = 1000) -> dict[str, Path]:
    work = Path(workdir)
    root, mined, shards = work / "release", work / "mined", work / "shards"
    if not (shards / "train" / shard_schema.SIZES_FILE).exists():
        workers = workers or os.cpu_count() or 1
        (root / "train").mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(root / "train")   # images of a killed run, half written
        chunk = max(1, math.ceil(images / (workers * 4)))
        jobs = [(str(root), s, min(images, s + chunk), classes, seed) for s in range(0, images, chunk)]
        run_parts(_render_range, jobs, workers, "render images")
        # the class list the shard writer checks the labels against (the release's info/synsets.txt)
        (root / "info").mkdir(exist_ok=True)
        (root / "info" / "synsets.txt").write_text("".join(f"n{i:08d} class{i}\n" for i in range(classes)))
        mined.mkdir(parents=True, exist_ok=True)
        for name, table in _tables(images, classes, keywords, seed).items():
            pq.write_table(table, mined / name)
        tm.write_complete(mined, "bench/synthetic.py")   # the completion marker later stages require
        shard_all(root, mined, shards, ShardConfig(max_count=shard_count, max_size=10**12), splits=("train",),
                  workers=workers, num_parts=max(1, min(workers, images // shard_count)))
    return {"release": root, "mined": mined, "shards": shards}
