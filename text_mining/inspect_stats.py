"""The numbers of the inspection report: overview, per-class noise estimate, keyword counts, samples.

Reads only the columns it needs from a finished text-mining folder (``images.parquet``: class,
keyword and label lists; ``classes``, ``vocabulary``, ``report.json``) and works on flat NumPy
arrays (the lists' values and offsets), so 16M images cost a few passes over a few hundred MB.
No image is opened here: the samples are train-list indices that the image side turns into
thumbnails (``pipeline/thumbnails.py``).

Estimated noise of a class: the share of its images whose top label weight is another class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import schema

COLUMNS = ("index", "path", "class_id", "keyword_ids", "label_ids", "label_weights")


@dataclass
class ClassRow:
    class_id: int
    wnid: str
    name: str
    count: int
    noise: float                                   # share whose top label is another class
    points_to: list[tuple[int, int]]               # (class id, images) of the suspect ones, most first
    top_keywords: list[tuple[int, int]]            # (keyword id, images), most first
    clean: list[int] = field(default_factory=list)     # sampled row numbers in the images table
    suspect: list[int] = field(default_factory=list)


@dataclass
class Stats:
    images: int
    classes: int
    vocabulary: int
    keywords_per_image: np.ndarray       # per image
    keyword_df: np.ndarray               # per keyword id (vocabulary order: df descending)
    keyword_names: list[str]
    class_names: list[str]
    class_counts: np.ndarray             # per class id
    top_weight: np.ndarray               # per image: its largest label weight (0 without labels)
    own_weight: np.ndarray               # per image: the weight of its own class (0 if absent)
    top_class: np.ndarray                # per image: its top label's class id (-1 without labels)
    problems: dict[str, int]
    rows: list[ClassRow]
    keyword_samples: dict[int, list[int]]    # keyword id -> sampled row numbers
    table: pa.Table                          # the columns read, for the samples' details


def _flat(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets) of a list column."""
    arr = col.combine_chunks()
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    values = np.asarray(arr.flatten().to_numpy(zero_copy_only=False))
    return values, offsets - offsets[0]


def label_stats(class_id: np.ndarray, label_ids: np.ndarray, label_weights: np.ndarray,
                offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: top label class (-1 if none), top weight, own-class weight (labels are
    weight-descending, so the top one is each list's first)."""
    n = len(class_id)
    lengths = np.diff(offsets)
    has = lengths > 0
    top_class = np.full(n, -1, dtype=np.int64)
    top_weight = np.zeros(n, dtype=np.float64)
    top_class[has] = label_ids[offsets[:-1][has]]
    top_weight[has] = label_weights[offsets[:-1][has]]
    row = np.repeat(np.arange(n), lengths)
    own = label_ids == class_id[row]
    own_weight = np.bincount(row[own], weights=label_weights[own], minlength=n)
    return top_class, top_weight, own_weight


def class_noise(class_id: np.ndarray, top_class: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(images per class, estimated noise per class): the share whose top label is another
    class; an image without labels counts as clean (nothing points elsewhere)."""
    counts = np.bincount(class_id, minlength=n_classes)
    suspect = (top_class >= 0) & (top_class != class_id)
    noisy = np.bincount(class_id[suspect], minlength=n_classes)
    return counts, np.divide(noisy, counts, out=np.zeros(n_classes), where=counts > 0)


def _top_pairs(first: np.ndarray, second: np.ndarray, n_second: int, k: int) -> dict[int, list[tuple[int, int]]]:
    """For each value of ``first``: the ``k`` most frequent values of ``second`` beside it, with
    counts (ties by smaller id)."""
    if not len(first):
        return {}
    combined = first.astype(np.int64) * n_second + second.astype(np.int64)
    uniq, counts = np.unique(combined, return_counts=True)
    a, b = uniq // n_second, uniq % n_second
    order = np.lexsort((b, -counts, a))
    out: dict[int, list[tuple[int, int]]] = {}
    for i in order:
        lst = out.setdefault(int(a[i]), [])
        if len(lst) < k:
            lst.append((int(b[i]), int(counts[i])))
    return out


def _sample(rows: np.ndarray, k: int, rng: np.random.Generator) -> list[int]:
    if len(rows) <= k:
        return sorted(int(r) for r in rows)
    return sorted(int(r) for r in rng.choice(rows, size=k, replace=False))


def compute(labels: str | Path, per_class: int = 6, keywords_shown: int = 50, per_keyword: int = 8,
            seed: int = 0, top_keywords: int = 10) -> Stats:
    """Everything the report shows, from the text-mining folder ``labels`` (checked finished);
    ``per_class`` clean and as many suspect samples per class, ``per_keyword`` samples for each of
    the ``keywords_shown`` most frequent keywords, drawn from ``np.random.default_rng(seed)``."""
    labels = Path(labels)
    schema.read_complete(labels)
    import pyarrow.parquet as pq
    table = pq.read_table(labels / schema.IMAGES_FILE, columns=list(COLUMNS))
    classes = schema.read_table(labels / schema.CLASSES_FILE, schema.CLASSES).sort_by("class_id")
    vocab = schema.read_table(labels / schema.VOCABULARY_FILE, schema.VOCABULARY).sort_by("id")
    report = schema.read_report(labels)
    n_classes, n_vocab = classes.num_rows, vocab.num_rows

    class_id = table["class_id"].to_numpy().astype(np.int64)
    kw_ids, kw_off = _flat(table["keyword_ids"])
    lab_ids, lab_off = _flat(table["label_ids"])
    lab_w, _ = _flat(table["label_weights"])
    top_class, top_weight, own_weight = label_stats(class_id, lab_ids.astype(np.int64), lab_w.astype(np.float64), lab_off)
    counts, noise = class_noise(class_id, top_class, n_classes)
    suspect = (top_class >= 0) & (top_class != class_id)
    points = _top_pairs(class_id[suspect], top_class[suspect], n_classes, 3)
    kw_rows = np.repeat(np.arange(len(class_id)), np.diff(kw_off))
    kw_by_class = _top_pairs(class_id[kw_rows], kw_ids, max(n_vocab, 1), top_keywords)

    rng = np.random.default_rng(seed)
    names = classes["name"].to_pylist()
    wnids = classes["wnid"].to_pylist()
    order = np.argsort(class_id, kind="stable")
    bounds = np.searchsorted(class_id[order], np.arange(n_classes + 1))
    rows: list[ClassRow] = []
    for c in range(n_classes):
        members = order[bounds[c]:bounds[c + 1]]
        bad = suspect[members]
        rows.append(ClassRow(c, wnids[c], names[c], int(counts[c]), float(noise[c]), points.get(c, []),
                             kw_by_class.get(c, []), _sample(members[~bad], per_class, rng),
                             _sample(members[bad], per_class, rng)))

    df = vocab["df"].to_numpy()
    kw_samples: dict[int, list[int]] = {}
    shown = [int(k) for k in np.argsort(-df, kind="stable")[:keywords_shown]]
    if shown:
        korder = np.argsort(kw_ids, kind="stable")
        kb = np.searchsorted(kw_ids[korder], np.arange(n_vocab + 1))
        for k in shown:
            kw_samples[k] = _sample(np.unique(kw_rows[korder[kb[k]:kb[k + 1]]]), per_keyword, rng)
    return Stats(images=table.num_rows, classes=n_classes, vocabulary=n_vocab,
                 keywords_per_image=np.diff(kw_off), keyword_df=df, keyword_names=vocab["keyword"].to_pylist(),
                 class_names=names, class_counts=counts, top_weight=top_weight, own_weight=own_weight,
                 top_class=top_class, problems=dict(report.get("problems", {}).get("counts", {})),
                 rows=rows, keyword_samples=kw_samples, table=table)


def sampled_rows(stats: Stats) -> list[int]:
    """Every row number a thumbnail is shown for, ascending."""
    rows = {r for c in stats.rows for r in c.clean + c.suspect}
    rows.update(r for lst in stats.keyword_samples.values() for r in lst)
    return sorted(rows)


def class_table_csv(stats: Stats) -> str:
    """The per-class table: class id, wnid, name, images, estimated noise, where the suspect ones
    point, top keywords."""
    import csv
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["class_id", "wnid", "name", "images", "estimated_noise", "points_to", "top_keywords"])
    for r in stats.rows:
        w.writerow([r.class_id, r.wnid, r.name, r.count, f"{r.noise:.4f}",
                    " ".join(f"{stats.class_names[c]}:{n}" for c, n in r.points_to),
                    " ".join(stats.keyword_names[k] for k, _n in r.top_keywords)])
    return buf.getvalue()
