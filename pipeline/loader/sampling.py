"""Streaming samplers: per-sample repeat factors instead of random access.

A sample with repeat factor r is emitted floor(r) times, plus once more with probability
r - floor(r) (stochastic rounding, as in repeat-factor sampling, Gupta et al., LVIS 2019). In a
stream over every sample, class c then appears n_c * r_c times in expectation, so

- ``instance``: r = 1 (each sample once);
- ``class``: r_c = N / (C n_c): every class equally likely (N samples, C classes, n_c of class c);
- ``sqrt``: r_c = N sqrt(n_c) / (n_c sum_c' sqrt(n_c')): class probability proportional to the
  square root of its frequency (Mahajan et al. 2018);
- ``keyword``: multi-label repeat-factor sampling over keyword targets: r_i = max over the image's
  keywords k of max(1, sqrt(t / f_k)), f_k the fraction of images with keyword k, t a threshold
  (LVIS RFS); images without keywords have r = 1;
- ``balanced``: every label (class or keyword) equally likely to be the one an image is drawn
  for, a cap on copies per image, a fixed number of draws per epoch (:mod:`.balanced`).
The copies of a sample go through the shuffle buffer, so they are spread over the epoch; in the
loader no two copies of one image come within a batch of each other (:func:`.stages.tracked_shuffle`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from webtag.storage import location, parquet_source

from .. import schema


def class_repeat_factors(class_counts: np.ndarray, mode: str) -> np.ndarray:
    """Repeat factor per class id (classes with no samples get 0)."""
    counts = np.asarray(class_counts, dtype=np.float64)
    present = counts > 0
    out = np.zeros_like(counts)
    n, c = counts.sum(), present.sum()
    if mode == "instance":
        out[present] = 1.0
    elif mode == "class":
        out[present] = n / (c * counts[present])
    elif mode == "sqrt":
        root = np.sqrt(counts[present])
        out[present] = n * root / (counts[present] * root.sum())
    else:
        raise ValueError(f"no class repeat factors for sampling mode {mode!r}")
    return out


def keyword_repeat_factors(keyword_lists, num_keywords: int, threshold: float) -> np.ndarray:
    """Per image, max over its keywords of max(1, sqrt(threshold / f_k))."""
    n = len(keyword_lists)
    df = np.zeros(num_keywords, dtype=np.float64)
    for kws in keyword_lists:
        df[np.asarray(kws, dtype=np.int64)] += 1
    freq = df / max(1, n)
    with np.errstate(divide="ignore"):
        rk = np.maximum(1.0, np.sqrt(threshold / freq))
    rk[df == 0] = 1.0
    return np.array([rk[np.asarray(k, dtype=np.int64)].max() if len(k) else 1.0 for k in keyword_lists])


def copies(r: float, rng: np.random.Generator) -> int:
    """Stochastic rounding of a repeat factor."""
    base = int(r)
    return base + (1 if rng.random() < r - base else 0)


def shard_repeat_factors(split_dir: Path, sizes: dict[str, int], mode: str, threshold: float,
                         num_keywords: int | None = None, balance: tuple[str, int, int] = ("class", 8, 0)
                         ) -> dict[str, np.ndarray]:
    """Every sample's repeat factor, per shard of ``sizes`` and by position in it, from the
    split's manifest (class ids, keyword ids): the factors of ``mode`` over the whole split;
    ``balanced`` over the shards of ``sizes``, with ``balance`` = (labels, cap, epoch draws)."""
    if mode == "balanced":
        from .balanced import balanced_factors, per_shard, read_labels
        over, cap, draws = balance
        table = read_labels(split_dir, set(sizes), over)
        return per_shard(table, balanced_factors(table, draws, cap), sizes)
    t = pq.read_table(parquet_source(location(split_dir) / schema.MANIFEST_FILE),
                      columns=["shard", "position", "class_id", "keyword_ids"]).to_pydict()
    if mode == "keyword":
        nk = num_keywords or (1 + max((k for ks in t["keyword_ids"] for k in ks), default=0))
        r = keyword_repeat_factors(t["keyword_ids"], nk, threshold)
    else:
        cls = np.asarray(t["class_id"], dtype=np.int64)
        r = class_repeat_factors(np.bincount(cls), mode)[cls]
    out: dict[str, list] = {s: [0.0] * n for s, n in sizes.items()}
    for shard, pos, f in zip(t["shard"], t["position"], r):
        if shard in out:
            out[shard][pos] = f
    return {s: np.asarray(v) for s, v in out.items()}
