"""Single-label classification metrics: top-1, top-5, their class-balanced forms, per-class
figures, confusions.

The balanced forms are the WebVision challenge's: the mean over classes of each class's accuracy
(top-1 or top-5; the challenge ranks by the balanced top-5). Classes with no image in the
evaluated split are left out of that mean, and how many classes it covers is stated
(``classes_evaluated``, ``classes_absent``). Images whose class id is negative (a test split
without labels) are not counted."""
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
        """A class scored -inf is never a hit (the k-NN's classes without a vote)."""
        k = min(5, scores.shape[1])
        values, top = scores.topk(k, dim=1)
        top, ranked = top.cpu().numpy(), torch.isfinite(values).cpu().numpy()
        y = labels.cpu().numpy().astype(np.int64)
        labelled = y >= 0
        top, ranked, y = top[labelled], ranked[labelled], y[labelled]
        np.add.at(self.total, y, 1)
        hit1 = (top[:, 0] == y) & ranked[:, 0]
        np.add.at(self.correct1, y[hit1], 1)
        np.add.at(self.correct5, y[((top == y[:, None]) & ranked).any(axis=1)], 1)
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
        bal1 = float((self.correct1[seen] / self.total[seen]).mean()) if seen.any() else 0.0
        bal5 = float((self.correct5[seen] / self.total[seen]).mean()) if seen.any() else 0.0
        return {
            "images": n,
            "top1": float(self.correct1.sum() / max(1, n)),
            "top5": float(self.correct5.sum() / max(1, n)),
            "top1_balanced": bal1,
            "top5_balanced": bal5,
            "classes_evaluated": int(seen.sum()),
            "classes_absent": int(self.num_classes - seen.sum()),
            "mean_class_acc": bal1,                  # the older name of top1_balanced
            "classes_seen": int(seen.sum()),
            "confusions": [{"true": t, "predicted": p, "count": c}
                           for (t, p), c in self.confusions.most_common(top_confusions)],
        }


    def per_class(self) -> list[dict]:
        """One row per class with images in the split: class id, count, top-1, top-5."""
        return [{"class_id": c, "count": int(self.total[c]), "top1": float(self.correct1[c] / self.total[c]),
                 "top5": float(self.correct5[c] / self.total[c])} for c in np.nonzero(self.total)[0].tolist()]


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of one ranking: the mean of precision@rank over the relevant items' ranks (ties broken
    by order). NaN when nothing is relevant."""
    if not relevant.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    rel = relevant[order].astype(np.float64)
    hits = np.cumsum(rel)
    return float((hits / np.arange(1, len(rel) + 1))[rel > 0].mean())


def multilabel_metrics(scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> dict:
    """The ML-GCN / SRN papers' multi-label metrics: mAP over classes (AP of each class's ranking of
    the images, classes without a positive skipped), and at ``threshold`` the per-class precision,
    recall and F1 (CP, CR, CF1: averaged over classes, F1 of the averages) and the overall ones
    (OP, OR, OF1: counted over all image-label pairs)."""
    pred = scores >= threshold
    truth = targets > 0
    aps = [average_precision(scores[:, c], truth[:, c]) for c in range(scores.shape[1]) if truth[:, c].any()]
    tp = (pred & truth).sum(axis=0).astype(np.float64)
    npred, ntrue = pred.sum(axis=0), truth.sum(axis=0)
    cp = np.mean(np.where(npred > 0, tp / np.maximum(npred, 1), 0.0))
    cr = np.mean(np.where(ntrue > 0, tp / np.maximum(ntrue, 1), 0.0))
    op = tp.sum() / max(1, npred.sum())
    orr = tp.sum() / max(1, ntrue.sum())

    def f1(p, r):
        return float(2 * p * r / (p + r)) if p + r > 0 else 0.0

    return {"images": int(len(scores)), "mAP": float(np.mean(aps)) if aps else 0.0, "classes_with_positives": len(aps),
            "threshold": threshold, "CP": float(cp), "CR": float(cr), "CF1": f1(cp, cr),
            "OP": float(op), "OR": float(orr), "OF1": f1(op, orr)}
