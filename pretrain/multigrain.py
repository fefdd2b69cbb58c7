"""MultiGrain's pieces (docs/methods.md, "MultiGrain"): GeM pooling, the margin loss with
distance-weighted negative sampling, and the joint loss.

Repeated-augmentation batches come from the loader (``loader.repeat_aug=m``): the m copies of an
image share their ``instance`` id and are positives for each other here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GeM(nn.Module):
    """Generalised mean pooling: ``f_c = (mean_{h,w} max(x, eps)^p)^(1/p)``. p = 1 is average
    pooling, p -> inf max pooling; p = 3 suits retrieval. ``learnable`` makes p a parameter; for
    evaluation at another resolution set ``p`` directly."""

    def __init__(self, p: float = 3.0, learnable: bool = False, eps: float = 1e-6, flatten: bool = True):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p))) if learnable else float(p)
        self.eps, self.flatten = eps, flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        y = x.float().clamp(min=self.eps).pow(p).mean(dim=(-2, -1), keepdim=not self.flatten).pow(1.0 / p)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        p = self.p.item() if isinstance(self.p, torch.Tensor) else self.p
        return f"p={p:.3g}, learnable={isinstance(self.p, nn.Parameter)}"


def distance_weights(d: torch.Tensor, dim: int, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """Unnormalised sampling weights of negatives at distances ``d`` between n-dim unit vectors:
    ``1 / q(d)`` with ``q(d) ~ d^(n-2) (1 - d^2/4)^((n-3)/2)`` (Wu et al., "Sampling Matters", eq. 3),
    computed in log space, distances clamped below at ``cutoff`` and weights zero at or beyond
    ``nonzero_loss_cutoff`` (as in the reference code) and where ``mask`` is False. Each row is
    scaled by its own largest weight (the reference code uses one global maximum, which in
    high dimensions underflows whole rows to zero)."""
    dc = d.clamp(min=max(cutoff, 1e-6))
    log_q = (dim - 2.0) * torch.log(dc) + ((dim - 3.0) / 2.0) * torch.log((1.0 - 0.25 * dc * dc).clamp(min=1e-8))
    valid = d < nonzero_loss_cutoff
    if mask is not None:
        valid = valid & mask
    log_w = torch.where(valid, -log_q, torch.full_like(log_q, float("-inf")))
    top = log_w.max(dim=-1, keepdim=True).values
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return torch.exp(log_w - top)


class MarginLoss(nn.Module):
    """``l(i, j) = max(0, alpha + y_ij (D(e_i, e_j) - beta))`` on L2-normalised embeddings, y = +1
    for positives (copies of the same instance), -1 for negatives; beta is learnable (init 1.2),
    alpha = 0.2. Every anchor with a positive uses all its positives and as many negatives drawn
    by distance-weighted sampling; the loss is the mean over the pairs with non-zero loss."""

    def __init__(self, alpha: float = 0.2, beta: float = 1.2, learn_beta: bool = True,
                 cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4):
        super().__init__()
        self.alpha = alpha
        self.beta = nn.Parameter(torch.tensor(beta)) if learn_beta else beta
        self.cutoff, self.nonzero = cutoff, nonzero_loss_cutoff

    def forward(self, embeddings: torch.Tensor, instance: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        e = F.normalize(embeddings.float(), dim=1)
        n, dim = e.shape
        d = torch.cdist(e, e).clamp(min=0.0)
        same = instance[:, None] == instance[None, :]
        eye = torch.eye(n, dtype=torch.bool, device=e.device)
        pos = same & ~eye
        neg = ~same
        anchors, positives = pos.nonzero(as_tuple=True)
        if anchors.numel() == 0:
            return e.sum() * 0.0
        with torch.no_grad():
            w = distance_weights(d, dim, self.cutoff, self.nonzero, mask=neg)
            rows = w[anchors]
            empty = rows.sum(dim=1) <= 0
            rows[empty] = neg[anchors[empty]].to(rows.dtype)   # no negative in range: uniform
            usable = rows.sum(dim=1) > 0
            negatives = torch.zeros_like(anchors)
            if usable.any():
                negatives[usable] = torch.multinomial(rows[usable], 1, generator=generator).squeeze(1)
        beta = self.beta
        pos_loss = F.relu(self.alpha + d[anchors, positives] - beta)
        neg_loss = F.relu(self.alpha - (d[anchors, negatives] - beta))[usable]
        losses = torch.cat([pos_loss, neg_loss])
        active = (losses > 0).sum().clamp(min=1)
        return losses.sum() / active


def joint_loss(classification: torch.Tensor, retrieval: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """MultiGrain's ``lambda * L_class + (1 - lambda) * L_retrieval``."""
    return lam * classification + (1.0 - lam) * retrieval


