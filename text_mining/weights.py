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
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .config import WeightsConfig
from .embed import mean_embeddings


def top_m(sims: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the positions and values of the m largest entries (in no particular order).
    torch.topk when PyTorch is installed (~30x faster than numpy's argpartition on wide rows)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of webtag
        pos = np.argpartition(-sims, m - 1, axis=1)[:, :m]
        return pos, np.take_along_axis(sims, pos, axis=1)
    val, pos = torch.topk(torch.from_numpy(np.ascontiguousarray(sims)), m, dim=1)
    return pos.numpy().astype(np.int64), val.numpy()


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


class LabelWeighter:
    def __init__(self, cfg: WeightsConfig, keyword_table: sp.csr_matrix, neighbours: sp.csr_matrix,
                 keyword_vectors: np.ndarray, ref_embeddings: np.ndarray, ref_index: np.ndarray,
                 ref_class: np.ndarray):
        self.cfg = cfg
        self.table = keyword_table            # V x C
        self.neighbours = neighbours          # C x C
        self.kw_vecs = keyword_vectors        # V x d, unit rows
        order = np.argsort(ref_index, kind="stable")  # sorted, for the self-exclusion lookup
        self.ref = np.ascontiguousarray(ref_embeddings[order], dtype=np.float32)
        self.ref_index = ref_index[order]
        self.ref_class = ref_class[order]
        self.n_classes = neighbours.shape[0]

    def text_scores(self, keyword_ids: list) -> sp.csr_matrix:
        lengths = np.fromiter((len(x) for x in keyword_ids), dtype=np.int64, count=len(keyword_ids))
        inv = np.divide(1.0, lengths, out=np.zeros(len(lengths)), where=lengths > 0)
        x = csr_from_lists(keyword_ids, [np.full(n, w) for n, w in zip(lengths, inv)], self.table.shape[0])
        return (x @ self.table).tocsr()

    def knn_scores(self, keyword_ids: list, image_index: np.ndarray, block: int = 1024) -> sp.csr_matrix:
        """Class histogram of each image's knn_k nearest reference images (cosine of mean word
        vectors), never counting the image itself. Neighbours depend only on the keyword set, so
        they are searched once per distinct set in the batch."""
        n, k = len(keyword_ids), self.cfg.knn_k
        n_ref = len(self.ref)
        if k == 0 or n_ref == 0:
            return sp.csr_matrix((n, self.n_classes))
        k = min(k, max(1, n_ref - 1))
        sets: dict[tuple, int] = {}
        inv = np.fromiter((sets.setdefault(tuple(sorted(x)), len(sets)) for x in keyword_ids),
                          dtype=np.int64, count=n)
        emb = mean_embeddings([list(key) for key in sets], self.kw_vecs)
        m = min(n_ref, k + 1 + 8)   # candidates: k, the image itself, and a margin for ties
        cand_pos = np.empty((len(sets), m), dtype=np.int64)
        cand_sim = np.empty((len(sets), m), dtype=np.float32)
        for lo in range(0, len(sets), block):
            sims = emb[lo: lo + block] @ self.ref.T
            pos, val = top_m(sims, m)
            cand_pos[lo: lo + len(pos)], cand_sim[lo: lo + len(pos)] = pos, val
        # round away BLAS blocking noise, then break ties by reference position: the result does
        # not depend on how images are batched into parts
        cand_sim = np.round(cand_sim, 5)
        own = np.searchsorted(self.ref_index, image_index)
        own_hit = (own < n_ref) & (self.ref_index[np.minimum(own, n_ref - 1)] == image_index)
        rows, cols = [], []
        for i in range(n):
            if not keyword_ids[i]:
                continue
            u = inv[i]
            pos, sim = cand_pos[u], cand_sim[u]
            if own_hit[i]:
                keep = pos != own[i]
                pos, sim = pos[keep], sim[keep]
            chosen = pos[np.lexsort((pos, -sim))[:k]]
            rows.append(np.full(len(chosen), i))
            cols.append(self.ref_class[chosen])
        if not rows:
            return sp.csr_matrix((n, self.n_classes))
        r = np.concatenate(rows)
        c = np.concatenate(cols).astype(np.int64)
        return sp.csr_matrix((np.full(len(r), 1.0 / k), (r, c)), shape=(n, self.n_classes))

    def weights(self, keyword_ids: list, class_ids: np.ndarray, image_index: np.ndarray):
        """Per image: (class ids, weights), weight-descending, weights sum to 1."""
        cfg = self.cfg
        score = cfg.query * self.neighbours[np.asarray(class_ids, dtype=np.int64)]
        if cfg.text:
            score = score + cfg.text * self.text_scores(keyword_ids)
        if cfg.knn:
            score = score + cfg.knn * self.knn_scores(keyword_ids, np.asarray(image_index))
        score = sp.csr_matrix(score)
        score.sum_duplicates()
        out_ids, out_w = [], []
        for r in range(score.shape[0]):
            lo, hi = score.indptr[r], score.indptr[r + 1]
            cols, vals = score.indices[lo:hi], score.data[lo:hi]
            keep = vals > 0
            cols, vals = cols[keep], vals[keep]
            order = np.lexsort((cols, -np.round(vals, 9)))[: cfg.top_k]
            cols, vals = cols[order], vals[order]
            if len(vals) == 0:  # no signal at all (query weight 0 and no text): the noisy label
                cols, vals = np.asarray([class_ids[r]]), np.asarray([1.0])
            w = sharpen(vals, cfg.power).astype(np.float32)
            w /= w.sum(dtype=np.float64)
            out_ids.append(cols.astype(np.int32))
            out_w.append(w.astype(np.float32))
        return out_ids, out_w
