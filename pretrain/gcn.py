"""ML-GCN's classifier head (docs/methods.md, "ML-GCN") and its label embeddings.

Two graph convolutions ``H' = LeakyReLU_0.2(A_hat H W)`` map the label embeddings (C x d) to C
classifiers (C x D); the scores are ``y = W x`` for the pooled image feature x (eq. 3-4 of the
paper; the last layer has no activation, as in the authors' code). ``A_hat`` is a sparse torch
tensor (pretrain.graph), so 35k keyword labels fit.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from webtag.safe_pickle import UnsafePickle, load_data_pickle

from .data import DataError

log = logging.getLogger(__name__)


def sparse_tensor(a: sp.spmatrix) -> torch.Tensor:
    coo = a.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data.astype(np.float32)), coo.shape,
                                   check_invariants=True).coalesce()


class GraphConv(nn.Module):
    """One GCN layer without activation: ``A_hat H W`` (Kipf & Welling, eq. 2)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        bound = 1.0 / math.sqrt(d_out)
        nn.init.uniform_(self.weight, -bound, bound)   # the authors' initialisation

    def forward(self, h: torch.Tensor, a_hat: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(a_hat, h @ self.weight)


class GCNClassifier(nn.Module):
    """Classifier weights from the label graph: ``W = A_hat LeakyReLU(A_hat E W1) W2`` (C x D),
    scores ``y = x W^T``. The adjacency and embeddings are buffers (saved with checkpoints)."""
    num_labels: int

    def __init__(self, embeddings: torch.Tensor, a_hat: torch.Tensor, feature_dim: int, hidden: int = 1024):
        super().__init__()
        self.register_buffer("embeddings", embeddings.float())
        a_hat = a_hat.coalesce().float()
        # kept as dense index/value buffers (checkpoint formats such as safetensors take no sparse
        # tensors); the sparse matrix is rebuilt from them on use
        self.register_buffer("a_indices", a_hat.indices().clone())
        self.register_buffer("a_values", a_hat.values().clone())
        self.num_labels = a_hat.shape[0]
        self.gc1 = GraphConv(embeddings.shape[1], hidden)
        self.gc2 = GraphConv(hidden, feature_dim)
        self.act = nn.LeakyReLU(0.2)

    @property
    def a_hat(self) -> torch.Tensor:
        n = self.num_labels
        return torch.sparse_coo_tensor(self.a_indices, self.a_values, (n, n), is_coalesced=True,
                                       check_invariants=False)   # built and checked once, in __init__

    def classifiers(self) -> torch.Tensor:
        a_hat = self.a_hat
        h = self.act(self.gc1(self.embeddings, a_hat))
        return self.gc2(h, a_hat)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.classifiers().to(features.dtype).t()


def label_embeddings(names: list[list[str]], vectors, dim: int | None = None, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """One vector per label: the mean of the word vectors of its words (a multi-word label such
    as "Cape May warbler" averages its words). ``vectors``: gensim KeyedVectors (or a mapping
    word -> vector). A label with no known word gets a fixed random unit vector (seeded, so the
    same run after run) and is reported. Returns (C x d float32, labels without a vector)."""
    dim = dim or int(getattr(vectors, "vector_size", 0) or len(next(iter(vectors.values()))))
    rng = np.random.default_rng(seed)
    out = np.zeros((len(names), dim), dtype=np.float32)
    missing = []
    for i, words in enumerate(names):
        found = [np.asarray(vectors[w], dtype=np.float32) for w in _words(words) if w in vectors]
        if found:
            out[i] = np.mean(found, axis=0)
        else:
            v = rng.standard_normal(dim).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
            missing.append(i)
    if missing:
        log.warning("%d of %d labels have no word vector (e.g. %s): each gets a fixed random unit vector",
                    len(missing), len(names), [" ".join(names[i]) for i in missing[:5]])
    return out, missing


def _words(words: list[str]) -> list[str]:
    out = []
    for w in words:
        out.extend(w.lower().replace("_", " ").replace("-", " ").split())
    return out


def load_embedding_matrix(path: str | Path, num_labels: int, dim: int | None = None) -> np.ndarray:
    """A provided C x d matrix: ``.npy`` (read without pickle), or a legacy pickle of an array as in
    the ML-GCN releases, read by :func:`webtag.safe_pickle.load_data_pickle` (numpy arrays and plain
    containers only: a pickle that would call anything else is refused, never run)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model.gcn.embeddings={path}: no such file")
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.asarray(load_data_pickle(path))
    except UnsafePickle as exc:
        raise DataError(f"model.gcn.embeddings={exc}") from None
    except ValueError as exc:   # np.load: an object array (needs pickle), or not an .npy file
        raise DataError(f"model.gcn.embeddings={path}: not a numeric .npy matrix ({exc})") from None
    if arr.ndim != 2 or arr.shape[0] != num_labels or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"model.gcn.embeddings={path}: a {num_labels} x d numeric matrix is needed, "
                        f"got shape {arr.shape} ({arr.dtype})")
    check_embedding_dim(arr, dim, str(path))
    return arr.astype(np.float32)


def check_embedding_dim(arr: np.ndarray, dim: int | None, source: str) -> None:
    """``model.gcn.embedding_dim``: the label vectors must be that wide (ML-GCN used 300-d GloVe)."""
    if dim is not None and arr.shape[1] != dim:
        raise DataError(f"model.gcn.embedding_dim={dim}: the label vectors of {source} are {arr.shape[1]}-d "
                        f"(make {dim}-d word vectors, or give model.gcn.embeddings=FILE.npy with {dim} columns)")
