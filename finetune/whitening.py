"""Retrieval features (MultiGrain; docs/methods.md, "MultiGrain"):
L2-normalise -> PCA whitening -> L2-normalise.

The whitening is fitted on a given set of embeddings (mean and the eigenvectors of their
covariance, each scaled by ``1 / sqrt(eigenvalue + eps)``) and saved as .npz; on the fitting set
the whitened (not yet re-normalised) features have zero mean and identity covariance.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class PCAWhitening:
    def __init__(self, mean: np.ndarray, projection: np.ndarray):
        self.mean, self.projection = mean, projection

    @classmethod
    def fit(cls, features: np.ndarray, dim: int | None = None, eps: float = 1e-9) -> "PCAWhitening":
        x = l2n(np.asarray(features, dtype=np.float64))
        if len(x) < 2:
            raise ValueError("whitening needs at least 2 embeddings to fit")
        mean = x.mean(axis=0)
        cov = np.cov(x - mean, rowvar=False, bias=True)
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(vals)[::-1][: dim or len(vals)]
        proj = vecs[:, order] / np.sqrt(np.maximum(vals[order], 0) + eps * max(vals.max(), 1e-30))
        return cls(mean, proj)

    def whiten(self, features: np.ndarray) -> np.ndarray:
        """Whitened features before the final normalisation."""
        return (l2n(np.asarray(features, dtype=np.float64)) - self.mean) @ self.projection

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return l2n(self.whiten(features)).astype(np.float32)

    def save(self, path: str | Path) -> None:
        np.savez(path, mean=self.mean, projection=self.projection)

    @classmethod
    def load(cls, path: str | Path) -> "PCAWhitening":
        with np.load(path) as z:
            return cls(z["mean"], z["projection"])
