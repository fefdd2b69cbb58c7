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
    scaled by its own largest weight (``margin_sampling=stable``; the reference code uses one
    global maximum, :func:`reference_probabilities`)."""
    dc = d.clamp(min=max(cutoff, 1e-6))
    log_q = (dim - 2.0) * torch.log(dc) + ((dim - 3.0) / 2.0) * torch.log((1.0 - 0.25 * dc * dc).clamp(min=1e-8))
    valid = d < nonzero_loss_cutoff
    if mask is not None:
        valid = valid & mask
    log_w = torch.where(valid, -log_q, torch.full_like(log_q, float("-inf")))
    top = log_w.max(dim=-1, keepdim=True).values
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return torch.exp(log_w - top)


def reference_probabilities(e: torch.Tensor, negative: torch.Tensor, cutoff: float = 0.5,
                            nonzero_loss_cutoff: float = 1.4) -> torch.Tensor:
    """Row-stochastic negative-sampling probabilities as facebookresearch/multigrain computes them
    (``DistanceWeightedSampling``): distances with 1 on the diagonal, clamped at ``cutoff``; the log
    weights shifted by ONE maximum over the whole matrix; masked to negatives closer than
    ``nonzero_loss_cutoff``; divided by the row sum. In high dimensions (2048) the weights of
    typical negatives underflow to 0 against that maximum, the row sum is 0 and the row NaN: such a
    row (and a row without a negative in range) is uniform over the negatives."""
    n, c = e.shape
    square = (e * e).sum(dim=1, keepdim=True)
    dist = torch.sqrt(square + square.t() - 2.0 * e @ e.t() + torch.eye(n, dtype=e.dtype, device=e.device))
    dist = dist.clamp(min=cutoff)
    log_w = (2.0 - c) * torch.log(dist) - ((c - 3) / 2) * torch.log(1.0 - 0.25 * dist * dist)
    w = torch.exp(log_w - log_w.max())
    w = w * (negative & (dist < nonzero_loss_cutoff)).to(w.dtype)
    w = w / w.sum(dim=1, keepdim=True)
    bad = torch.isnan(w.sum(dim=1))
    uniform = negative.to(w.dtype) / negative.sum(dim=1, keepdim=True).clamp(min=1)
    return torch.where(bad[:, None], uniform, w)


def stable_probabilities(e: torch.Tensor, negative: torch.Tensor, cutoff: float = 0.5,
                         nonzero_loss_cutoff: float = 1.4) -> torch.Tensor:
    """The same inverse-q weights scaled per row (:func:`distance_weights`), so that they do not
    underflow: in high dimensions this mines the nearest negatives. Rows without a negative in
    range are uniform over the negatives."""
    d = torch.cdist(e, e).clamp(min=0.0)
    w = distance_weights(d, e.shape[1], cutoff, nonzero_loss_cutoff, mask=negative)
    total = w.sum(dim=1, keepdim=True)
    uniform = negative.to(w.dtype) / negative.sum(dim=1, keepdim=True).clamp(min=1)
    return torch.where(total > 0, w / total.clamp(min=1e-30), uniform)


def sample_negatives(probs: torch.Tensor, counts: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """For row i, ``counts[i]`` column indices drawn from ``probs[i]`` without replacement, or with
    replacement where fewer columns have a non-zero probability (as the reference falls back);
    concatenated in row order."""
    out = []
    nonzero = (probs > 0).sum(dim=1)
    for i in torch.nonzero(counts > 0).flatten().tolist():
        k = int(counts[i])
        if int(nonzero[i]) == 0:
            continue
        out.append(torch.multinomial(probs[i], k, replacement=bool(nonzero[i] < k), generator=generator))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=probs.device)


def margin_terms(d_ap: torch.Tensor, d_an: torch.Tensor, beta, alpha: float) -> torch.Tensor:
    """The reference's margin loss of triplets: ``sum(max(0, d_ap - beta + alpha) +
    max(0, beta - d_an + alpha))`` divided by the number of triplets with a non-zero loss (the
    authors' ``(pos > 0) + (neg > 0)`` on booleans is a logical or: a triplet counts once)."""
    pos = F.relu(d_ap - beta + alpha)
    neg = F.relu(beta - d_an + alpha)
    active = ((pos > 0) | (neg > 0)).sum().clamp(min=1)
    return (pos + neg).sum() / active


class MarginLoss(nn.Module):
    """``l(i, j) = max(0, alpha + y_ij (D(e_i, e_j) - beta))`` on L2-normalised embeddings, y = +1
    for positives (copies of the same instance), -1 for negatives; beta is learnable (init 1.2),
    alpha = 0.2. As the authors' code: an anchor with m - 1 positives gets m - 1 negatives drawn by
    distance-weighted sampling without replacement, triplet t = (anchor, its t-th positive, its
    t-th negative), the loss is :func:`margin_terms`. ``sampling``: ``reference`` (the authors'
    probabilities, :func:`reference_probabilities`) or ``stable`` (:func:`stable_probabilities`)."""

    def __init__(self, alpha: float = 0.2, beta: float = 1.2, learn_beta: bool = True,
                 cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4, sampling: str = "reference"):
        super().__init__()
        if sampling not in ("reference", "stable"):
            raise ValueError(f"margin sampling {sampling!r}: reference or stable")
        self.alpha, self.sampling = alpha, sampling
        self.beta = nn.Parameter(torch.tensor(beta)) if learn_beta else beta
        self.cutoff, self.nonzero = cutoff, nonzero_loss_cutoff

    def forward(self, embeddings: torch.Tensor, instance: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        e = F.normalize(embeddings.float(), dim=1)
        n = e.shape[0]
        same = instance[:, None] == instance[None, :]
        pos = same & ~torch.eye(n, dtype=torch.bool, device=e.device)
        anchors, positives = pos.nonzero(as_tuple=True)   # row-major: each anchor's positives in order
        if anchors.numel() == 0:
            return e.sum() * 0.0
        with torch.no_grad():
            probs = (reference_probabilities if self.sampling == "reference" else stable_probabilities)(
                e.detach(), ~same, self.cutoff, self.nonzero)
            counts = pos.sum(dim=1)
            has_negative = (probs > 0).any(dim=1)
            # drawn on the CPU (one B x B copy instead of a device sync per anchor); a CPU generator
            negatives = sample_negatives(probs.cpu(), counts.cpu(), generator).to(e.device)
            keep = has_negative[anchors]   # a batch of one instance only has no negative
        a, p = anchors[keep], positives[keep]
        d_ap = torch.sqrt(((e[p] - e[a]) ** 2).sum(dim=1) + 1e-8)
        d_an = torch.sqrt(((e[negatives] - e[a]) ** 2).sum(dim=1) + 1e-8)
        return margin_terms(d_ap, d_an, self.beta, self.alpha)


def joint_loss(classification: torch.Tensor, retrieval: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """MultiGrain's ``lambda * L_class + (1 - lambda) * L_retrieval``."""
    return lam * classification + (1.0 - lam) * retrieval


