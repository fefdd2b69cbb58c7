"""ML-GCN's label correlation matrix (docs/methods.md, "ML-GCN"), sparse end to end.

From the training labels (the classes, or the ~35k-keyword vocabulary): ``M_ij`` images with
both i and j, ``N_i`` images with i, the conditional probability ``P_ij = M_ij / N_i``, the binary
matrix ``A_ij = 1 if P_ij >= tau`` (i != j), and the re-weighted matrix (paper, eq. 7-8)

    A'_ij = p * A_ij / sum_{j != i} A_ij  (i != j),    A'_ii = 1 - p,

with a label that has no neighbour at or above tau keeping only its self-loop, of weight 1.
Every row of A' sums to 1, so the GCN's symmetric normalisation ``D^-1/2 A' D^-1/2`` (D from
row sums) leaves it unchanged and it stays asymmetric.

``variant="original"`` reproduces the authors' code instead (gen_A / gen_adj in ML-GCN): the
binary matrix divided by its column sums times 0.25, plus the identity, then normalised as
``(A D^-1/2)^T D^-1/2`` with D from row sums. Close to p = 0.2 after normalisation, not equal.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def cooccurrence(label_lists, num_labels: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """(M, N): the sparse label co-occurrence counts (diagonal = N) and the per-label image counts."""
    rows, cols = [], []
    for i, labels in enumerate(label_lists):
        uniq = np.unique(np.asarray(labels, dtype=np.int64))
        if uniq.size and (uniq[0] < 0 or uniq[-1] >= num_labels):
            raise ValueError(f"image {i}: label id out of range [0, {num_labels})")
        rows.append(np.full(uniq.size, i, dtype=np.int64))
        cols.append(uniq)
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    x = sp.csr_matrix((np.ones(r.size, dtype=np.int64), (r, c)), shape=(len(rows), num_labels))
    m = (x.T @ x).tocsr()
    return m, np.asarray(m.diagonal()).astype(np.int64)


def binary_adjacency(m: sp.csr_matrix, n: np.ndarray, tau: float) -> sp.csr_matrix:
    """``A_ij = 1 if M_ij / N_i >= tau`` for i != j (no self-loops)."""
    coo = m.tocoo()
    off = coo.row != coo.col
    r, c, v = coo.row[off], coo.col[off], coo.data[off]
    keep = v / np.maximum(n[r], 1) >= tau
    return sp.csr_matrix((np.ones(int(keep.sum())), (r[keep], c[keep])), shape=m.shape)


def reweighted(a: sp.csr_matrix, p: float) -> sp.csr_matrix:
    """The paper's re-weighted matrix A' (eq. 8) from the binary A."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p={p} must be in [0, 1]")
    deg = np.asarray(a.sum(axis=1)).ravel()
    scale = np.where(deg > 0, p / np.maximum(deg, 1), 0.0)
    off = sp.diags(scale) @ a
    self_w = np.where(deg > 0, 1.0 - p, 1.0)
    return (off + sp.diags(self_w)).tocsr()


def original_code_adjacency(a: sp.csr_matrix) -> sp.csr_matrix:
    """The authors' code: ``A * 0.25 / (column sums + 1e-6) + I``, then ``(A D^-1/2)^T D^-1/2``."""
    col = np.asarray(a.sum(axis=0)).ravel()
    b = (a @ sp.diags(0.25 / (col + 1e-6)) + sp.identity(a.shape[0])).tocsr()
    d = sp.diags(np.power(np.asarray(b.sum(axis=1)).ravel(), -0.5))
    return ((b @ d).T @ d).tocsr()


def symmetric_normalise(a: sp.csr_matrix) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` with D the row sums (the GCN propagation matrix A_hat)."""
    deg = np.asarray(a.sum(axis=1)).ravel()
    d = sp.diags(np.where(deg > 0, np.power(np.maximum(deg, 1e-12), -0.5), 0.0))
    return (d @ a @ d).tocsr()


def label_graph(label_lists, num_labels: int, tau: float = 0.4, p: float = 0.2,
                variant: str = "paper") -> sp.csr_matrix:
    """The GCN's propagation matrix A_hat for the labels."""
    m, n = cooccurrence(label_lists, num_labels)
    a = binary_adjacency(m, n, tau)
    if variant == "paper":
        return symmetric_normalise(reweighted(a, p))
    if variant == "original":
        return original_code_adjacency(a)
    raise ValueError(f"variant={variant!r}: paper or original")


def graph_stats(a_hat: sp.csr_matrix) -> dict:
    """Density and neighbours per label (self-loops excluded), to choose tau and p."""
    n = a_hat.shape[0]
    coo = a_hat.tocoo()
    off = coo.row != coo.col
    per_label = np.bincount(coo.row[off], minlength=n)
    return {"labels": int(n), "edges": int(off.sum()), "density": float(off.sum() / max(1, n * (n - 1))),
            "mean_neighbours": float(per_label.mean()) if n else 0.0,
            "max_neighbours": int(per_label.max()) if n else 0,
            "isolated_labels": int((per_label == 0).sum())}
