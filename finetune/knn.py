"""Classifiers on frozen features, to compare pretrainings before a full finetune.

- :func:`knn_scores`: the weighted k-NN of DINO's evaluation (Caron et al. 2021, ``eval_knn.py``):
  features L2-normalised, the k training images of highest cosine similarity vote for their
  class with weight ``exp(similarity / T)`` (T = 0.07, k = 20 by default), the class scores are
  the sums of those votes.
- :func:`linear_probe`: multinomial logistic regression on the normalised features (mini-batch
  AdamW for a few epochs, seeded), its softmax as the class scores.

Both feed :class:`finetune.metrics.ClassificationMeter`, so the figures are the same top-1 /
top-5 and balanced forms as ``evaluate``'s. Training images without a class (id < 0) are left out.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from .metrics import ClassificationMeter


def _labelled(feat: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    keep = labels >= 0
    return F.normalize(feat[keep].float(), dim=1), labels[keep].long()


def knn_scores(train_feat: torch.Tensor, train_labels: torch.Tensor, query_feat: torch.Tensor, k: int, T: float,
               num_classes: int, chunk: int = 1024) -> Iterator[torch.Tensor]:
    """Per chunk of queries, the class scores (chunk x num_classes): the sum over the query's k
    nearest training images (cosine) of ``exp(sim / T)`` on their class; -inf for a class that no
    neighbour has, so it never counts in the top 5 (DINO's top-5 counts only the first min(5, k)
    ranks, where the order of unvoted classes is arbitrary)."""
    train, labels = _labelled(train_feat, train_labels)
    if len(train) == 0:
        raise ValueError("no labelled training image for the k-NN classifier")
    k = min(k, len(train))
    query = F.normalize(query_feat.float(), dim=1)
    for lo in range(0, len(query), chunk):
        sim = query[lo:lo + chunk] @ train.T
        top_sim, top_idx = sim.topk(k, dim=1, largest=True, sorted=True)
        votes = torch.zeros(len(sim), num_classes, dtype=sim.dtype, device=sim.device)
        voted = torch.zeros_like(votes, dtype=torch.bool)
        votes.scatter_add_(1, labels[top_idx], (top_sim / T).exp())
        voted.scatter_(1, labels[top_idx], True)
        yield votes.masked_fill(~voted, float("-inf"))


def knn_evaluate(train_feat, train_labels, eval_feat, eval_labels, ks: list[int], T: float,
                 num_classes: int) -> dict[int, ClassificationMeter]:
    """One meter per k."""
    meters = {}
    for k in ks:
        meter, lo = ClassificationMeter(num_classes), 0
        for votes in knn_scores(train_feat, train_labels, eval_feat, k, T, num_classes):
            meter.update(votes, eval_labels[lo:lo + len(votes)])
            lo += len(votes)
        meters[k] = meter
    return meters


def linear_probe(train_feat, train_labels, num_classes: int, epochs: int = 10, lr: float = 1e-2,
                 weight_decay: float = 1e-4, batch_size: int = 256, seed: int = 0) -> torch.nn.Linear:
    """A linear classifier trained with cross entropy on the L2-normalised frozen features."""
    x, y = _labelled(train_feat, train_labels)
    if len(x) == 0:
        raise ValueError("no labelled training image for the linear probe")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], num_classes).to(x.device)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen).to(x.device)
        for lo in range(0, len(x), batch_size):
            idx = order[lo:lo + batch_size]
            loss = F.cross_entropy(head(x[idx]) / 0.1, y[idx])   # logits of unit vectors: a temperature of 0.1
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


@torch.no_grad()
def probe_evaluate(head: torch.nn.Linear, eval_feat, eval_labels, num_classes: int) -> ClassificationMeter:
    meter = ClassificationMeter(num_classes)
    meter.update((head(F.normalize(eval_feat.float(), dim=1)) / 0.1).softmax(dim=1), eval_labels)
    return meter
