"""LW-Set label weights of a batch of images (docs/methods.md, "LW-Set").

For image i with vocabulary keywords K_i, query class q_i and text embedding e_i:
- text:  T_ic = (1/|K_i|) sum_{k in K_i} S_kc, S the sparse keyword x class table (top-k per
  keyword of WordNet and word-vector similarity), built once for the vocabulary;
- query: Q_ic = N_{q_i c}, N the class x class WordNet table (top-k neighbours, N_cc = 1);
- KNN:   K_ic = share of the image's knn_k nearest reference images (cosine of e) labelled c;
- score: s_ic = text T_ic + query Q_ic + knn K_ic; keep the top_k classes and set
  ``w_ic = s_ic^power / sum_c' s_ic'^power`` (sum 1; :func:`sharpen`).
Images without vocabulary keywords get T = K = 0, i.e. their query's neighbourhood.

The slide names the three components; how they are combined (0.4 / 0.4 / 0.2, top 10, power 4)
is webtag's choice. ``power=4`` (the default) sharpens the flat similarity scale: the slide's
example scores 0.77 / 0.45 / 0.31 / 0.28 / 0.11 become 0.86 / 0.10 / 0.02 / 0.02 / 0.00;
``power=1`` keeps the scores' shares as they are (0.40 / 0.23 / 0.16 / 0.15 / 0.06).

Speed (hand-written): the neighbour search is text_mining/knn.py; the per-image Python loops that
picked an image's neighbours (a lexsort each) and its labels (a lexsort and a sharpen each) are
whole-batch array operations here, bit for bit the same results (tests/test_text_mining/
test_knn_search.py keeps the loops as the reference). The tag step at 20k realistic records went
from 0.39 to ~0.13 CPU ms a record with the search (bench/text_mining.py; figures in knn.py).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .config import WeightsConfig
from .embed import IdLists, mean_embeddings
from .knn import NeighbourSearch


def csr_from_lists(ids: list, scores: list, n_cols: int) -> sp.csr_matrix:
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    cols = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids]) if len(ids) and lengths.sum() else np.zeros(0, np.int64)
    vals = np.concatenate([np.asarray(x, dtype=np.float64) for x in scores]) if len(ids) and lengths.sum() else np.zeros(0)
    return sp.csr_matrix((vals, cols, indptr), shape=(len(ids), n_cols))


def sharpen(scores: np.ndarray, power: float) -> np.ndarray:
    """Weights proportional to ``scores ** power``, summing to 1 (power 1: linear shares)."""
    vals = np.asarray(scores, dtype=np.float64) ** power
    return vals / vals.sum()


def _row_order(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_cols: int) -> np.ndarray:
    """The order of (row, score rounded to 9 decimals descending, column): one argsort of an int64
    key where it fits (3x faster than np.lexsort of the three), else the lexsort."""
    q = np.rint(vals * 1e9)     # np.round(vals, 9) is q / 1e9: the same order, the same ties
    top = float(q.max()) + 1 if len(q) else 1.0
    span = top * n_cols
    if span * (rows[-1] + 1 if len(rows) else 1) < 2.0 ** 62:
        key = rows * np.int64(span) + (np.int64(top) - q.astype(np.int64)) * n_cols + cols
        return np.argsort(key)   # the keys are distinct: any sort gives the same order
    return np.lexsort((cols, -np.round(vals, 9), rows))


class LabelWeighter:
    def __init__(self, cfg: WeightsConfig, keyword_table: sp.csr_matrix, neighbours: sp.csr_matrix,
                 keyword_vectors: np.ndarray, ref_embeddings: np.ndarray, ref_index: np.ndarray,
                 ref_class: np.ndarray, centroids: np.ndarray | None = None):
        self.cfg = cfg
        self.table = keyword_table            # V x C
        self.neighbours = neighbours          # C x C
        self.kw_vecs = keyword_vectors        # V x d, unit rows
        order = np.argsort(ref_index, kind="stable")  # sorted, for the self-exclusion lookup
        self.ref = np.ascontiguousarray(ref_embeddings[order], dtype=np.float32)
        self.ref_index = ref_index[order]
        self.ref_class = ref_class[order]
        self.n_classes = neighbours.shape[0]
        self.search = None   # built on first use (knn weight > 0)
        self.centroids = centroids

    def neighbour_search(self) -> NeighbourSearch:
        if self.search is None:
            self.search = NeighbourSearch(self.ref, self.cfg.knn_search, self.centroids, self.cfg.knn_probe)
        return self.search

    def text_scores(self, keyword_ids) -> sp.csr_matrix:
        lists = IdLists.of(keyword_ids)
        lengths = lists.lengths
        inv = np.divide(1.0, lengths, out=np.zeros(len(lengths)), where=lengths > 0)
        x = sp.csr_matrix((np.repeat(inv, lengths), lists.ids, lists.offsets), shape=(len(lists), self.table.shape[0]))
        return (x @ self.table).tocsr()

    def knn_scores(self, keyword_ids, image_index: np.ndarray) -> sp.csr_matrix:
        """Class histogram of each image's knn_k nearest reference images (cosine of mean word
        vectors; ties by reference position), never counting the image itself. Neighbours depend
        only on the keyword set, so they are searched once per distinct set in the batch (its
        sorted ids as bytes: the key of a dict, ~5x cheaper than a tuple of Python ints)."""
        lists = IdLists.of(keyword_ids)
        n, k = len(lists), self.cfg.knn_k
        n_ref = len(self.ref)
        if k == 0 or n_ref == 0:
            return sp.csr_matrix((n, self.n_classes))
        k = min(k, max(1, n_ref - 1))
        has = lists.lengths > 0
        srt = lists.sorted_within()
        raw = srt.ids.astype(np.int64).tobytes()
        b = (srt.offsets * 8).tolist()
        sets: dict[bytes, int] = {}
        first = []   # a row with each distinct set
        inv = np.zeros(n, dtype=np.int64)
        for row in np.flatnonzero(has).tolist():
            j = sets.setdefault(raw[b[row]: b[row + 1]], len(sets))
            if j == len(first):
                first.append(row)
            inv[row] = j
        emb = mean_embeddings(srt.take(np.asarray(first, dtype=np.int64)), self.kw_vecs)
        pos, _ = self.neighbour_search().search(emb, k + 1)   # k, and one more if the image is among them
        own = np.searchsorted(self.ref_index, image_index)
        own_hit = (own < n_ref) & (self.ref_index[np.minimum(own, n_ref - 1)] == image_index)
        own = np.where(own_hit, own, -2)
        cand = pos[inv[has]]                                   # images with keywords x (k + 1)
        drop = (cand == own[has][:, None]) | (cand < 0)
        first = np.argsort(drop, axis=1, kind="stable")[:, :k]   # the first k that stay, in order
        chosen = np.take_along_axis(cand, first, axis=1)
        ok = ~np.take_along_axis(drop, first, axis=1)
        r = np.repeat(np.flatnonzero(has), k).reshape(-1, k)[ok]
        c = self.ref_class[chosen[ok]].astype(np.int64)
        if not len(r):
            return sp.csr_matrix((n, self.n_classes))
        return sp.csr_matrix((np.full(len(r), 1.0 / k), (r, c)), shape=(n, self.n_classes))

    def weights_flat(self, keyword_ids, class_ids: np.ndarray, image_index: np.ndarray):
        """(offsets, class ids, weights) of all images in one go (``keyword_ids``: a sequence of
        id lists or :class:`~text_mining.embed.IdLists`): image i's labels are
        ``[offsets[i], offsets[i + 1])``, weight-descending (ties: lower class id first), at most
        top_k of them, the weights summing to 1; an image without any score keeps its noisy label."""
        cfg = self.cfg
        keyword_ids = IdLists.of(keyword_ids)   # once, for both scores
        class_ids = np.asarray(class_ids, dtype=np.int64)
        score = cfg.query * self.neighbours[class_ids]
        if cfg.text:
            score = score + cfg.text * self.text_scores(keyword_ids)
        if cfg.knn:
            score = score + cfg.knn * self.knn_scores(keyword_ids, np.asarray(image_index))
        score = sp.csr_matrix(score)
        score.sum_duplicates()
        n = score.shape[0]
        rows = np.repeat(np.arange(n), np.diff(score.indptr))
        keep = score.data > 0
        rows, cols, vals = rows[keep], score.indices[keep].astype(np.int64), score.data[keep]
        del score, keep   # the batch's largest arrays: freed before the sort makes its copies
        order = _row_order(rows, cols, vals, self.n_classes)
        rows, cols, vals = rows[order], cols[order], vals[order]
        counts = np.bincount(rows, minlength=n)
        start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        top = np.arange(len(rows)) - start[rows] < cfg.top_k
        rows, cols, vals = rows[top], cols[top], vals[top]
        lengths = np.minimum(counts, cfg.top_k)
        empty = np.flatnonzero(lengths == 0)
        if len(empty):   # no signal at all (query weight 0 and no text): the noisy label
            rows = np.concatenate([rows, empty])
            cols = np.concatenate([cols, class_ids[empty]])
            vals = np.concatenate([vals, np.ones(len(empty))])
            o = np.argsort(rows, kind="stable")
            cols, vals = cols[o], vals[o]
            lengths[empty] = 1
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        # sharpen, one row length at a time: each row's sums then run over exactly its own
        # values, as a loop over the rows would (the same float rounding)
        powered = vals ** cfg.power
        w = np.empty(len(vals), dtype=np.float32)
        for length in np.unique(lengths):
            idx = offsets[:-1][lengths == length][:, None] + np.arange(length)
            p = powered[idx]
            a = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
            a /= a.sum(axis=1, dtype=np.float64, keepdims=True)
            w[idx] = a
        return offsets, cols.astype(np.int32), w

    def weights(self, keyword_ids: list, class_ids: np.ndarray, image_index: np.ndarray):
        """Per image: (class ids, weights), weight-descending, weights sum to 1."""
        offsets, ids, w = self.weights_flat(keyword_ids, class_ids, image_index)
        return np.split(ids, offsets[1:-1]), np.split(w, offsets[1:-1])
