"""Instance retrieval with a trained model (MultiGrain; docs/methods.md, "MultiGrain").

Embeddings are the model's pooled features (the input of its classifier: GeM-pooled when the model
was trained with ``model.pooling=gem``), L2-normalised, optionally PCA-whitened and normalised
again (:mod:`finetune.whitening`). Every query is ranked against the gallery by cosine similarity;
with class labels, a gallery image is relevant when it shares the query's class: mAP over the
queries and precision@k. When queries and gallery are the same split, an image is not its own
neighbour.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from pipeline.loader import LoaderConfig, ShardLoader
from pretrain.backbone import head_prefix
from pretrain.evaluation import model_outputs

from .metrics import average_precision
from .whitening import PCAWhitening, l2n


class PooledFeatures(torch.nn.Module):
    """The model's pooled features (its classifier's input) as the output, for the evaluation loop."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.captured: torch.Tensor | None = None
        self.hook = self.model.get_submodule(head_prefix(model)).register_forward_pre_hook(self._capture)

    def _capture(self, module, args) -> None:
        self.captured = args[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.model(images)
        out, self.captured = self.captured, None
        return out


@torch.no_grad()
def embed(model: torch.nn.Module, info: dict, split_dir: str | Path, image_size: int | None = None,
          batch_size: int = 64, workers: int = 2, device="cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings N x D, class ids, train-list indices) of a split, centre crop at ``image_size``."""
    size = image_size or int(info["image_size"])
    # the largest centre square (crop_pct 1): MultiGrain evaluates retrieval on whole images at a
    # larger side; batches of one size keep the square, so only the long side's ends are cut
    cfg = LoaderConfig(batch_size=batch_size, workers=workers, train=False, image_size=size, crop_pct=1.0)
    feats, classes, ids = [], [], []
    features = PooledFeatures(model)
    try:
        for (f,), batch, keep in model_outputs([features], [ShardLoader(split_dir, cfg)], device,
                                               autocast=contextlib.nullcontext):
            feats.append(f.cpu())
            classes.append(batch["class_id"][keep])
            ids.append(batch["index"][keep])
    finally:
        features.hook.remove()
    return torch.cat(feats).numpy(), torch.cat(classes).numpy(), torch.cat(ids).numpy()


def retrieve(queries: np.ndarray, gallery: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k gallery indices and similarities per query (cosine; ``exclude[i]``: a gallery index
    that query i must not return, or -1)."""
    sim = l2n(queries) @ l2n(gallery).T
    if exclude is not None:
        rows = np.nonzero(exclude >= 0)[0]
        sim[rows, exclude[rows]] = -np.inf
    k = min(k, sim.shape[1])
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(sim, top, axis=1)


def evaluate_retrieval(q_feat, q_cls, g_feat, g_cls, k: int = 10, exclude: np.ndarray | None = None,
                       whitening: PCAWhitening | None = None) -> dict:
    if whitening is not None:
        q_feat, g_feat = whitening(q_feat), whitening(g_feat)
    sim = l2n(q_feat) @ l2n(g_feat).T
    if exclude is not None:
        rows = np.nonzero(exclude >= 0)[0]
        sim[rows, exclude[rows]] = -np.inf
    aps, precs = [], []
    kk = min(k, sim.shape[1])
    for i in range(len(sim)):
        valid = np.isfinite(sim[i])
        relevant = (g_cls == q_cls[i]) & valid
        ap = average_precision(np.where(valid, sim[i], -1e9), relevant)
        if not np.isnan(ap):
            aps.append(ap)
        top = np.argsort(-sim[i], kind="stable")[:kk]
        precs.append(relevant[top].mean())
    return {"queries": int(len(sim)), "gallery": int(sim.shape[1]), "k": kk,
            "mAP": float(np.mean(aps)) if aps else 0.0, f"precision@{kk}": float(np.mean(precs)) if precs else 0.0,
            "whitened": whitening is not None}
