"""Targets and losses of WT-Set and LW-Set pretraining (docs/methods.md, "Losses").

Batches carry sparse labels packed as (flat ids, offsets) (pipeline.loader.collate);
:func:`dense_targets` turns them into a ``B x C`` matrix on the device, per batch, with one
scatter. Every loss takes logits ``z`` (B x C) and such a target matrix and returns the mean over
all images of the batch; an image without targets (no keywords) contributes 0. Dividing by the
batch size, not by the number of labelled images, keeps gradient accumulation exact: k
micro-batches of b give the gradient of one batch of k*b.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import LossConfig


def dense_targets(ids: torch.Tensor, offsets: torch.Tensor, num_classes: int,
                  weights: torch.Tensor | None = None, normalise: bool = True) -> torch.Tensor:
    """Packed sparse labels -> dense ``B x C`` float targets on ``ids.device``.

    Image i's labels are ``ids[offsets[i]:offsets[i+1]]`` with ``weights`` (default 1 each). With
    ``normalise`` each non-empty row is divided by its sum, so the target mass of an image is 1
    (soft-target cross entropy: 1/|P| per keyword; LW-Set weights already sum to 1)."""
    n = offsets.numel() - 1
    check_ids(ids, num_classes)
    lengths = offsets[1:] - offsets[:-1]
    rows = torch.repeat_interleave(torch.arange(n, device=ids.device), lengths.to(ids.device))
    vals = weights.to(torch.float32) if weights is not None else torch.ones(ids.numel(), device=ids.device)
    out = torch.zeros(n, num_classes, device=ids.device, dtype=torch.float32)
    out.index_put_((rows, ids.long()), vals.to(ids.device), accumulate=True)
    if normalise:
        total = out.sum(dim=1, keepdim=True)
        out = torch.where(total > 0, out / total.clamp_min(1e-12), out)
    return out


def check_ids(ids: torch.Tensor, num_classes: int) -> None:
    """Label ids must index the head (checked on CPU tensors only: no device sync per batch)."""
    if ids.device.type == "cpu" and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_classes):
        raise ValueError(f"label id {int(ids.max())} out of range [0, {num_classes}): the shards were made "
                         "with another vocabulary or class list than the head was sized for")


def _batch_mean(per_image: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch; rows without targets are 0 by construction of each loss."""
    has = (targets.sum(dim=1) > 0).to(per_image.dtype)
    return (per_image * has).sum() / max(1, per_image.shape[0])


class SoftTargetCrossEntropy(nn.Module):
    """WT-Set (methods.md section 2): ``L = -(1/|P|) sum_{k in P} log softmax(z)_k``; with the
    target row ``t`` (1/|P| on P) that is ``L = -sum_k t_k log softmax(z)_k``. The same form with
    the label weights ``t = w`` (``sum_k w_k = 1``) is LW-Set's weighted cross entropy
    (section 3): ``L = -sum_k w_k log softmax(z)_k``. Averaged over the batch. With unnormalised
    keyword targets (``t_k = 1`` on P, ``loss.reduction=sum``) it is the slide's WT-Set loss
    ``L = -sum_{k in P} log softmax(z)_k``."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        return _batch_mean(-(targets * logp).sum(dim=1), targets)


class BinaryCrossEntropy(nn.Module):
    """Per-label sigmoids: ``L = -sum_k [y_k log s(z_k) + (1 - y_k) log(1 - s(z_k))]`` with
    ``y_k = 1`` for k in P; summed over labels, averaged over the batch."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        y = (targets > 0).float()
        per = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none").sum(dim=1)
        return _batch_mean(per, targets)


class AsymmetricLoss(nn.Module):
    """Asymmetric loss (Ridnik et al., ICCV 2021, eq. 1-4): with ``p = sigmoid(z)`` and the shifted
    probability ``p_m = max(p - m, 0)``,
    ``L+ = (1 - p)^gamma_pos log(p)``, ``L- = p_m^gamma_neg log(1 - p_m)`` and
    ``L = -sum_k [y_k L+ + (1 - y_k) L-]``; summed over labels, averaged over the batch.
    Defaults gamma_neg = 4, gamma_pos = 0, m = 0.05 (the paper's)."""

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05, eps: float = 1e-8):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        y = (targets > 0).float()
        p = torch.sigmoid(logits.float())
        p_m = (p - self.clip).clamp_min(0) if self.clip > 0 else p
        pos = (1 - p).pow(self.gamma_pos) * torch.log(p.clamp_min(self.eps))
        neg = p_m.pow(self.gamma_neg) * torch.log((1 - p_m).clamp_min(self.eps))
        per = -(y * pos + (1 - y) * neg).sum(dim=1)
        return _batch_mean(per, targets)


class MultiLabelSoftMargin(nn.Module):
    """ML-GCN's loss (torch's ``MultiLabelSoftMarginLoss``, as the authors train):
    ``L = -(1/C) sum_k [y_k log s(z_k) + (1 - y_k) log(1 - s(z_k))]``, the mean over the C labels
    (``bce`` is C times this); averaged over the batch."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        y = (targets > 0).float()
        per = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none").mean(dim=1)
        return _batch_mean(per, targets)


def build_loss(cfg: LossConfig) -> nn.Module:
    if cfg.name in ("soft_ce", "weighted_ce"):
        return SoftTargetCrossEntropy()
    if cfg.name == "bce":
        return BinaryCrossEntropy()
    if cfg.name == "multilabel_soft_margin":
        return MultiLabelSoftMargin()
    return AsymmetricLoss(cfg.gamma_neg, cfg.gamma_pos, cfg.clip)


def target_ids_key(target: str) -> str:
    return {"keywords": "keyword_ids", "weights": "label_ids", "class": "class_id"}[target]


def batch_targets(batch: dict, target: str, num_classes: int, device, reduction: str = "mean") -> torch.Tensor:
    """The dense targets of a loader batch: keyword ids (WT-Set), label weights (LW-Set) or the
    class label (finetuning). Keywords: ``reduction="mean"`` gives each of an image's |P| keywords
    1/|P| (soft-target CE is then the mean of the keywords' cross entropies), ``"sum"`` gives each 1
    (their sum, the slide's loss)."""
    check_ids(batch[target_ids_key(target)], num_classes)
    if target == "class":   # one class per image: one-hot (soft-target CE is then plain cross entropy)
        cls = batch["class_id"].to(device, non_blocking=True)
        return torch.nn.functional.one_hot(cls.long(), num_classes).float()
    if target == "keywords":
        return dense_targets(batch["keyword_ids"].to(device, non_blocking=True),
                             batch["keyword_offsets"].to(device, non_blocking=True), num_classes,
                             normalise=reduction != "sum")
    return dense_targets(batch["label_ids"].to(device, non_blocking=True),
                         batch["label_offsets"].to(device, non_blocking=True), num_classes,
                         weights=batch["label_weights"].to(device, non_blocking=True))
