"""Label-balanced sampling while streaming (``loader.sampling=balanced``): every label (a class, or a
keyword: ``loader.balance_over``) equally likely to be the one an image is drawn for.

The target is two-level sampling: draw a label uniformly, then one of its images uniformly. An
image i with labels L_i is then drawn with probability proportional to
``s_i = sum_{k in L_i} 1 / n_k`` (n_k: images with label k), and a draw of i is for label k with
probability ``(1 / n_k) / s_i``. Two-level sampling needs random access to any image of a label,
which a stream of tar shards does not have; the same expectation comes from per-image repeat
factors, which the streaming loader already applies (:mod:`.sampling`, :mod:`.stages`):

    r_i = min(cap, T * s_i)        T such that sum_i r_i = D, the epoch's draws

D is ``loader.epoch_draws`` (0: as many draws as images), ``cap`` is ``loader.balanced_cap``, the
most copies of one image in an epoch (stochastic rounding never exceeds it, since cap is an
integer). Uncapped, label k gets ``sum_{i in k} T s_i (1 / n_k) / s_i = T`` draws: the same for
every label. A label with fewer than ``T / cap`` images cannot reach T; the draws it cannot take
go to the others (T is solved with the cap in place), and ``python -m pipeline loader-check``
prints how far from uniform the result is (:func:`exposure`). Images without labels (no
keyword) get r = 0: no draw is for them.

Why repeat factors and not two-level sampling over shards: both have the same expected draws
per label (above), but two-level sampling reads a random image per draw, while the factors keep
the stream a sequential read of each shard once per epoch, and the resume by consumed shards
(:mod:`.plan`) stays as it is. (Not measured here: how the two compare in throughput.)

Copies of one image are kept apart by the shuffle buffer (:func:`.stages.tracked_shuffle` with
``spread``): a copy is never emitted within ``images_per_batch`` samples of another copy of the
same image, so no batch holds two (repeated augmentation aside); a copy that cannot be placed so
(the buffer holds nothing else, at the end of a worker's pass) is dropped.

Memory: the factors, one float64 per image (8 bytes x images, as every repeat-factor mode
holds), and per worker the keys of the last ``images_per_batch`` samples; the label table read
here is freed once the factors are computed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from webtag.storage import location, parquet_source

from .. import schema

LABEL_COLUMNS = {"class": "class_id", "keywords": "keyword_ids"}


@dataclass
class LabelTable:
    """Every image of the loader's shards: where it is and its labels (CSR: ``offsets``, ``labels``)."""
    shard: np.ndarray
    position: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def row(self) -> np.ndarray:
        """The image of each entry of ``labels``."""
        return np.repeat(np.arange(len(self.shard)), self.lengths)


def read_labels(split_dir: Path, shards, over: str) -> LabelTable:
    """The labels ``over`` (``class``: the class id, ``keywords``: the keyword ids) of the images of
    ``shards`` (the loader's), from the split's manifest."""
    if over not in LABEL_COLUMNS:
        raise ValueError(f"loader.balance_over must be one of {sorted(LABEL_COLUMNS)}, not {over!r}")
    col = LABEL_COLUMNS[over]
    t = pq.read_table(parquet_source(location(split_dir) / schema.MANIFEST_FILE), columns=["shard", "position", col])
    keep = pc.is_in(t["shard"], value_set=pa_strings(shards))
    t = t.filter(keep)
    shard = np.asarray(t["shard"].to_numpy(zero_copy_only=False), dtype=object)
    position = t["position"].to_numpy().astype(np.int64)
    if over == "class":
        labels = t[col].to_numpy().astype(np.int64)
        offsets = np.arange(len(labels) + 1, dtype=np.int64)
    else:
        lists = t[col].combine_chunks()
        lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        labels = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    return LabelTable(shard, position, offsets, labels)


def pa_strings(values):
    import pyarrow as pa
    return pa.array(sorted(values), pa.string())


def inverse_frequency_sums(table: LabelTable) -> tuple[np.ndarray, np.ndarray]:
    """(s_i = sum over image i's labels of 1 / n_k, n_k per label id)."""
    counts = np.bincount(table.labels, minlength=1).astype(np.float64) if len(table.labels) else np.zeros(1)
    inv = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    s = np.bincount(table.row, weights=inv[table.labels], minlength=len(table.shard))
    return s, counts


def solve_factors(s: np.ndarray, draws: float, cap: int) -> np.ndarray:
    """r_i = min(cap, T s_i) with sum r_i = draws: T solved exactly (sort, then the number of
    capped images). An error if even every image at the cap does not make ``draws``."""
    live = s > 0
    m = int(live.sum())
    if draws > cap * m:
        raise ValueError(f"loader.epoch_draws={draws:g} needs more than loader.balanced_cap={cap} copies of "
                         f"the {m} images with a label: raise the cap or lower epoch_draws")
    desc = np.sort(s[live])[::-1]
    rest = np.concatenate([np.cumsum(desc[::-1])[::-1], [0.0]])     # rest[j] = sum of desc[j:]
    j = np.arange(m + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (draws - j * cap) / rest
        above = np.concatenate([[np.inf], desc])[j] * t >= cap * (1 - 1e-12)   # the j largest are capped
        below = np.concatenate([desc, [0.0]])[j] * t <= cap * (1 + 1e-12)      # the others are not
    ok = np.flatnonzero(above & below & np.isfinite(t))
    if not len(ok):          # every image at the cap
        return np.where(live, float(cap), 0.0)
    return np.minimum(float(cap), t[ok[0]] * s)


def balanced_factors(table: LabelTable, draws: int, cap: int) -> np.ndarray:
    """Every image's repeat factor (order of ``table``); ``draws`` 0: as many as images."""
    s, _ = inverse_frequency_sums(table)
    return solve_factors(s, float(draws or len(s)), cap)


def exposure(table: LabelTable, r: np.ndarray) -> dict[str, np.ndarray]:
    """Per label (those with images): the expected draws for it, a draw of image i being for label
    k with probability (1 / n_k) / s_i as under two-level sampling, and its expected appearances as
    a target (every label of a drawn image), in an epoch with repeat factors ``r``."""
    s, counts = inverse_frequency_sums(table)
    row = table.row
    share = np.divide(1.0 / np.maximum(counts[table.labels], 1), s[row], out=np.zeros(len(row)), where=s[row] > 0)
    present = counts > 0
    draws_for = np.bincount(table.labels, weights=r[row] * share, minlength=len(counts))
    appearances = np.bincount(table.labels, weights=r[row], minlength=len(counts))
    return {"draws_for": draws_for[present], "appearances": appearances[present]}


def relative_percentiles(values: np.ndarray, qs=(10, 50, 90)) -> dict[str, float]:
    """Percentiles over labels of ``values`` relative to uniform (their mean over the labels)."""
    mean = values.mean() if len(values) else 0.0
    return {f"p{q}": float(np.percentile(values, q) / mean) if mean else 0.0 for q in qs}


def _by_shard(table: LabelTable):
    """(shard name, rows of ``table`` in it) for each shard: one sort, not a scan per shard."""
    if not len(table.shard):
        return
    names, inv = np.unique(table.shard.astype(str), return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inv, minlength=len(names)))])
    for i, name in enumerate(names):
        yield str(name), order[bounds[i]: bounds[i + 1]]


def per_shard(table: LabelTable, r: np.ndarray, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """``r`` by shard and position, the layout :mod:`.stages` reads (missing positions: 0)."""
    out = {s: np.zeros(n) for s, n in sizes.items()}
    for name, rows in _by_shard(table):
        if name in out:
            pos = table.position[rows]
            ok = pos < len(out[name])
            out[name][pos[ok]] = r[rows[ok]]
    return out


def factors_by_position(table: LabelTable, repeat: dict[str, np.ndarray] | None) -> np.ndarray:
    """The per-shard factors of a loader (``ShardLoader.repeat``; None: ``instance``, 1 each) in
    the order of ``table``."""
    if repeat is None:
        return np.ones(len(table.shard))
    r = np.zeros(len(table.shard))
    for name, rows in _by_shard(table):
        f = repeat.get(name)
        if f is not None:
            pos = table.position[rows]
            ok = pos < len(f)
            r[rows[ok]] = f[pos[ok]]
    return r
