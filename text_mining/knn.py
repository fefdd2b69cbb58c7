"""Nearest reference images of the LW-Set KNN component (weights.knn_search: ``ivf`` | ``exact``).

Each image's unit mean word vector is compared with the KNN reference set (weights.knn_reference,
up to 100k images) by inner product. An exact search costs ``2 d n_ref`` FLOPs per image (2e7 at
100k): at 16M images that alone is more than the stage's whole CPU budget (issue 19), so the
default is an inverted-file search: the reference vectors are split into ``knn_lists`` clusters
by coarse centroids trained once in the vocabulary step (:func:`train_centroids`, faiss k-means,
saved as ``knn_centroids.npy``, a plain float32 matrix), and an image is compared only with the
vectors of its ``knn_probe`` nearest clusters. ``exact`` is faiss ``IndexFlatIP`` over the whole
set. :func:`knn_recall` measures ivf's recall against exact (bench/text_mining.py prints it).

Speed (hand-written, measured): faiss's ``IndexIVFFlat`` scans a list once per image, one vector
at a time (~340 us CPU an image at 100k reference images, 632 lists, 32 probed); here a batch's
images are grouped by the lists they probe, each list is scored once for all of them with one
float32 matrix product, and the scores go into faiss's per-image heaps (78 us, the same
candidates). Everything runs on one thread (:func:`one_thread`): on two, the threads' start and
wait around the many small calls cost more than the work (470 us). bench/text_mining.py
--records 100000 (realistic text, 99.9k reference images, 632 lists, 48 probed): ivf 0.09 CPU ms
an image, exact 0.33, recall@10 of ivf against exact 0.987 (2000 images); at 1.6M records 0.946
(most images outside the reference set), with 64 probed (the default) 0.966 at 0.11 ms; the
whole tag step 0.78 -> 0.20 CPU ms a record (torch.topk and per-image loops before).

The result does not depend on how images are split into parts or batches:
- identical reference vectors are one entry of the index; its images are expanded in position
  order, so ties between copies are broken by reference position, not by faiss's heap;
- faiss's float32 scores only pick candidates (``k + 1 + margin``); they are re-scored in float64
  (products of float32 values are exact there; the sum's rounding is ~1e-16), rounded to 5
  decimals, and ordered by (score descending, reference position ascending), as before;
- the probed lists are picked by float64 scores too, and every reference vector's list is its
  float64-nearest centroid;
- a row whose candidates might miss a tied or nearly tied vector (the last kept score is not
  clearly above the last candidate's, float32 noise included) is searched again exactly among
  the vectors it may see (all of them, or those of its probed lists); one whose probed lists
  hold too few images is searched against the whole set (both rare).
"""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

CENTROIDS_FILE = "knn_centroids.npy"
DECIMALS = 5                 # scores are compared rounded to this many decimals
SCALE = 10 ** DECIMALS
TOL = 1e-5                   # |float32 score - exact score| is far below this
Q_TOP = 2 * SCALE + 2        # keys: (Q_TOP - rounded score) << 32 | id, smaller is better
ID_BITS = 32
ID_MASK = (1 << ID_BITS) - 1
NONE = ID_MASK               # id of an empty slot (sorts last among equal scores)
MARGIN = 8                   # extra candidates beyond the ones kept
BLOCK = 1024                 # rows re-scored at a time (bounds the gathered candidate vectors)
CHUNK = 8192                 # rows searched at a time


class CentroidsMissing(ValueError):
    """weights.knn_search is ivf but the vocabulary folder has no (fitting) coarse centroids (a
    ValueError: the command line prints it as one ``error:`` line)."""


def auto_lists(n_ref: int) -> int:
    """knn_lists 0: about 2 sqrt(n) lists, each with >= 39 training vectors (faiss's minimum)."""
    return max(1, min(int(round(2 * math.sqrt(n_ref))), n_ref // 39))


@contextmanager
def one_thread():
    """faiss, OpenMP and BLAS on one thread (the search and k-means run many small calls: on two
    threads each call's start and the threads' waiting between calls cost more than the work:
    ivf search at 100k reference images, 632 lists, 32 probed: 470 us CPU an image on two
    threads, 78 on one)."""
    from threadpoolctl import threadpool_limits
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        faiss.omp_set_num_threads(threads)


def train_centroids(ref: np.ndarray, n_lists: int, seed: int, iterations: int = 20) -> np.ndarray:
    """Coarse centroids (n_lists x d, float32, unit rows) of the reference vectors: spherical
    k-means (faiss), seeded, on the distinct vectors in their given order, with one thread
    (faiss's per-centroid sums are in point order; one thread keeps the assignment BLAS calls the
    same whatever the machine's thread count)."""
    uniq = _distinct(np.ascontiguousarray(ref, dtype=np.float32))[0]
    n_lists = max(1, min(n_lists, len(uniq)))
    with one_thread():
        km = faiss.Kmeans(uniq.shape[1], n_lists, niter=iterations, seed=seed, spherical=True,
                          max_points_per_centroid=256, verbose=False)
        km.train(uniq)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def save_centroids(folder: Path, centroids: np.ndarray) -> None:
    np.save(Path(folder) / CENTROIDS_FILE, np.ascontiguousarray(centroids, dtype=np.float32), allow_pickle=False)


def load_centroids(folder: Path, dim: int) -> np.ndarray:
    """The vocabulary step's centroids; CentroidsMissing (one line) if absent or not fitting."""
    path = Path(folder) / CENTROIDS_FILE
    if not path.is_file():
        raise CentroidsMissing(
            f"{path} does not exist (a vocabulary folder from before weights.knn_search ivf): rerun the "
            f"vocabulary step, or set weights.knn_search: exact")
    c = np.load(path, allow_pickle=False)
    if c.ndim != 2 or c.dtype != np.float32 or c.shape[1] != dim or not len(c):
        raise CentroidsMissing(f"{path}: {c.shape} {c.dtype} are not float32 centroids of dimension {dim}: "
                               f"rerun the vocabulary step")
    return c


def _distinct(x: np.ndarray):
    """(distinct rows in order of first occurrence, the row -> distinct-row map)."""
    if len(x) == 0:
        return x, np.zeros(0, np.int64)
    rows = np.ascontiguousarray(x).view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, first, inv = np.unique(rows, return_index=True, return_inverse=True)   # as bytes: 2x faster than axis=0
    inv = inv.reshape(-1)
    rank = np.empty(len(first), np.int64)
    order = np.argsort(first, kind="stable")
    rank[order] = np.arange(len(first))
    return x[first[order]], rank[inv]


def _rescore(x: np.ndarray, base: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """float64 inner products of each row of x with its candidate base rows (ids < 0: -inf)."""
    out = np.empty(ids.shape, dtype=np.float64)
    for lo in range(0, len(x), BLOCK):
        i = ids[lo: lo + BLOCK]
        g = base[np.maximum(i, 0)].astype(np.float64)
        out[lo: lo + BLOCK] = np.einsum("nd,nmd->nm", x[lo: lo + BLOCK].astype(np.float64), g)
    out[ids < 0] = -np.inf
    return out


def _keys(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    q = np.where(np.isfinite(scores), np.rint(np.nan_to_num(scores, neginf=0.0) * SCALE), -SCALE - 1)
    ids = np.where(ids < 0, NONE, ids)
    return ((Q_TOP - q.astype(np.int64)) << ID_BITS) | ids.astype(np.int64)


def _bound(worst32: np.ndarray) -> np.ndarray:
    """Key score part that a vector outside the candidates can at best reach."""
    return Q_TOP - np.rint((worst32.astype(np.float64) + TOL) * SCALE).astype(np.int64)


class NeighbourSearch:
    """The reference set (unit rows, in reference-position order) as a faiss index."""

    def __init__(self, ref: np.ndarray, method: str = "exact", centroids: np.ndarray | None = None,
                 probe: int = 1):
        ref = np.ascontiguousarray(ref, dtype=np.float32)
        self.n_ref, self.dim = ref.shape
        self.method = method
        self.base, inv = _distinct(ref)          # distinct vectors; their images in position order
        order = np.argsort(inv, kind="stable")
        self.group_pos = order.astype(np.int64)
        self.group_ptr = np.concatenate([[0], np.cumsum(np.bincount(inv, minlength=len(self.base)))])
        self.group_len = np.diff(self.group_ptr)
        self.base64 = self.base.astype(np.float64)
        if method == "exact" or len(self.base) == 0:
            self.method = "exact"
            self.index = faiss.IndexFlatIP(self.dim)
            self.index.add(self.base)
            return
        if centroids is None:
            raise ValueError("ivf search needs the coarse centroids")
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.centroids64 = self.centroids.astype(np.float64)
        self.probe = max(1, min(probe, len(self.centroids)))
        # each distinct vector's list: its nearest centroid in float64 (ties: lowest id)
        lists = np.empty(len(self.base), np.int64)
        for lo in range(0, len(self.base), 8192):
            lists[lo: lo + 8192] = np.argmax(self.base64[lo: lo + 8192] @ self.centroids64.T, axis=1)
        # one exact (BLAS) index per list: a batch's images are grouped by the lists they probe,
        # and each list is searched once for all of them (see the module docs for why)
        order = np.argsort(lists, kind="stable")
        ptr = np.searchsorted(lists[order], np.arange(len(self.centroids) + 1))
        self.list_ids = [order[a:b] for a, b in zip(ptr[:-1], ptr[1:])]
        self.list_positions = np.array([int(self.group_len[ids].sum()) for ids in self.list_ids], dtype=np.int64)
        self.list_sizes = np.array([len(ids) for ids in self.list_ids], dtype=np.int64)
        self.list_vectors = [np.ascontiguousarray(self.base[ids]) for ids in self.list_ids]

    # -- candidates ---------------------------------------------------------------------------
    def _probes(self, x: np.ndarray) -> np.ndarray:
        """The knn_probe lists of each row: the best coarse scores, computed in float64 (their
        rounding, ~1e-16, never decides between two centroids in practice) and selected in
        float32 by faiss's heaps (numpy's argpartition took 4x longer)."""
        n_c = len(self.centroids)
        if self.probe >= n_c:
            return np.broadcast_to(np.arange(n_c), (len(x), n_c)).copy()
        scores = np.ascontiguousarray(x.astype(np.float64) @ self.centroids64.T, dtype=np.float32)
        d = np.empty((len(x), self.probe), dtype=np.float32)
        ids = np.empty((len(x), self.probe), dtype=np.int64)
        heaps = faiss.float_minheap_array_t()   # keeps the largest
        heaps.nh, heaps.k, heaps.val, heaps.ids = len(x), self.probe, faiss.swig_ptr(d), faiss.swig_ptr(ids)
        heaps.heapify()
        heaps.addn(n_c, faiss.swig_ptr(scores))
        return ids

    def _expand(self, x: np.ndarray, cand: np.ndarray, take: int) -> np.ndarray:
        """Sorted keys of the best ``take`` reference positions among the candidate vectors."""
        scores = _rescore(x, self.base, cand)
        c = int(min(take, self.group_len[np.maximum(cand, 0)].max())) if cand.size else 1
        j = np.arange(c)
        safe = np.maximum(cand, 0)
        slot = self.group_ptr[safe][..., None] + j
        ok = (j < self.group_len[safe][..., None]) & (cand[..., None] >= 0)
        pos = np.where(ok, self.group_pos[np.minimum(slot, len(self.group_pos) - 1)], -1)
        sc = np.where(ok, scores[..., None], -np.inf)
        keys = _keys(sc, pos).reshape(len(x), -1)
        keys.sort(axis=1)
        return keys[:, :take]

    def _ivf_candidates(self, x: np.ndarray, probes: np.ndarray, m: int):
        """(float32 scores, ids) of each row's m best vectors in its probed lists, best first, and
        whether that is every vector of those lists. Each list is scored once for all the rows
        that probe it (one float32 matrix product) and pushed into the rows' faiss heaps."""
        n, p = probes.shape
        flat = probes.ravel()
        order = np.argsort(flat, kind="stable")
        ptr = np.searchsorted(flat[order], np.arange(len(self.list_vectors) + 1))
        d = np.empty((n, m), dtype=np.float32)
        ids = np.empty((n, m), dtype=np.int64)
        heaps = faiss.float_minheap_array_t()   # keeps the m largest
        heaps.nh, heaps.k, heaps.val, heaps.ids = n, m, faiss.swig_ptr(d), faiss.swig_ptr(ids)
        heaps.heapify()
        self._push(x, heaps, order, ptr, p)
        heaps.reorder()
        every = self.list_sizes[probes].sum(axis=1) <= m
        return d, ids, every

    def _push(self, x, heaps, order, ptr, p) -> None:
        for lst in np.flatnonzero(np.diff(ptr)):
            members = self.list_ids[lst]
            if not len(members):
                continue
            rows = np.ascontiguousarray(order[ptr[lst]: ptr[lst + 1]] // p, dtype=np.int64)
            scores = np.ascontiguousarray(x[rows] @ self.list_vectors[lst].T)
            heaps.addn_query_subset_with_ids(len(rows), faiss.swig_ptr(rows), len(members), faiss.swig_ptr(scores),
                                             faiss.swig_ptr(members), 0)

    def _exact_rows(self, x: np.ndarray, take: int, among: list | None = None) -> np.ndarray:
        """Sorted keys of the best ``take`` positions (float64) against every reference vector,
        or against the vectors ``among[r]`` for row r."""
        out = np.full((len(x), take), (Q_TOP + SCALE + 1) << ID_BITS | NONE, dtype=np.int64)
        for r, row in enumerate(x.astype(np.float64)):
            base_ids = np.arange(len(self.base)) if among is None else among[r]
            if not len(base_ids):
                continue
            q = np.rint(self.base64[base_ids] @ row * SCALE).astype(np.int64)
            t = min(take, len(q))
            cut = np.partition(q, len(q) - t)[len(q) - t]
            sel = np.flatnonzero(q >= cut)
            ids = base_ids[sel]
            lo, n_take = self.group_ptr[ids], np.minimum(self.group_len[ids], take)
            pos = np.concatenate([self.group_pos[a: a + b] for a, b in zip(lo, n_take)])
            keys = np.sort(((Q_TOP - np.repeat(q[sel], n_take)) << ID_BITS) | pos)
            out[r, : min(take, len(keys))] = keys[:take]
        return out

    def search(self, x: np.ndarray, take: int) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`_search`, run on one thread (:func:`one_thread`), CHUNK rows at a time (the
        coarse scores are CHUNK x knn_lists float64)."""
        if len(x) <= CHUNK:
            with one_thread():
                return self._search(x, take)
        parts = [self.search(x[lo: lo + CHUNK], take) for lo in range(0, len(x), CHUNK)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _search(self, x: np.ndarray, take: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions, rounded scores x 1e5) of the ``take`` best reference images of each row of
        x (unit float32), ordered by score descending then position; position -1: no more.
        exact: over the whole reference set; ivf: over the vectors of the row's probed lists."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if len(x) == 0 or len(self.base) == 0:
            return np.full((len(x), take), -1, np.int64), np.zeros((len(x), take), np.int64)
        m = min(len(self.base), take + MARGIN)
        if self.method == "exact":
            d32, cand = self.index.search(x, m)
            every = np.full(len(x), m == len(self.base))
        else:
            probes = self._probes(x)
            d32, cand, every = self._ivf_candidates(x, probes, m)
        keys = self._expand(x, cand, take)
        worst = np.where(cand[:, -1] >= 0, d32[:, -1], 0.0)   # no m-th candidate: every is true
        # a vector outside the candidates might tie with or beat the last one kept: search exactly
        unsure = ~every & ((keys[:, -1] >> ID_BITS) >= _bound(worst))
        if self.method == "ivf":   # too few images in the probed lists: the whole set
            few = self.list_positions[probes].sum(axis=1) < min(take, self.n_ref)
            rows = np.flatnonzero(unsure & ~few)
            if len(rows):
                keys[rows] = self._exact_rows(x[rows], take, [np.concatenate([self.list_ids[lst] for lst in probes[r]])
                                                             for r in rows])
            unsure = few
        rows = np.flatnonzero(unsure)
        if len(rows):
            keys[rows] = self._exact_rows(x[rows], take)
        pos = (keys & ID_MASK).astype(np.int64)
        pos[pos == NONE] = -1
        return pos, Q_TOP - (keys >> ID_BITS)


def knn_recall(ivf: NeighbourSearch, exact: NeighbourSearch, x: np.ndarray, k: int) -> float:
    """Share of the exact k nearest reference images (by position) that ivf also returns."""
    a, _ = ivf.search(x, k)
    b, _ = exact.search(x, k)
    hit = sum(len(set(r[r >= 0]) & set(e[e >= 0])) for r, e in zip(a, b))
    return hit / max(1, int((b >= 0).sum()))
