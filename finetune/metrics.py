"""Single-label classification metrics: top-1, top-5, mean per-class accuracy, confusions."""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch


class ClassificationMeter:
    """Accumulates (logits or probabilities, labels) batch by batch. ``state()`` returns
    additive arrays so that ranks can be summed; ``result()`` computes the metrics."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.total = np.zeros(num_classes, dtype=np.int64)
        self.correct1 = np.zeros(num_classes, dtype=np.int64)
        self.correct5 = np.zeros(num_classes, dtype=np.int64)
        self.confusions: Counter = Counter()   # (true, predicted) -> count, errors only

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        k = min(5, scores.shape[1])
        top = scores.topk(k, dim=1).indices.cpu().numpy()
        y = labels.cpu().numpy().astype(np.int64)
        np.add.at(self.total, y, 1)
        hit1 = top[:, 0] == y
        np.add.at(self.correct1, y[hit1], 1)
        np.add.at(self.correct5, y[(top == y[:, None]).any(axis=1)], 1)
        for t, p in zip(y[~hit1].tolist(), top[~hit1, 0].tolist()):
            self.confusions[(t, p)] += 1

    def merge(self, other: "ClassificationMeter") -> None:
        self.total += other.total
        self.correct1 += other.correct1
        self.correct5 += other.correct5
        self.confusions.update(other.confusions)

    def result(self, top_confusions: int = 10) -> dict:
        n = int(self.total.sum())
        seen = self.total > 0
        per_class = self.correct1[seen] / self.total[seen]
        return {
            "images": n,
            "top1": float(self.correct1.sum() / max(1, n)),
            "top5": float(self.correct5.sum() / max(1, n)),
            "mean_class_acc": float(per_class.mean()) if seen.any() else 0.0,
            "classes_seen": int(seen.sum()),
            "confusions": [{"true": t, "predicted": p, "count": c}
                           for (t, p), c in self.confusions.most_common(top_confusions)],
        }
