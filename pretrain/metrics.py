"""Training metrics: precision@k against sparse target sets, and the CSV + TensorBoard log."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

from webtag.atomic import atomic_file


def precision_at_k(logits: torch.Tensor, targets: torch.Tensor, ks: list[int]) -> dict[int, torch.Tensor]:
    """Per k: the sum over images of ``|top_k(z) ∩ P| / k`` (P: the labels with target > 0), for the
    images that have labels, and their count under key 0. Sums, so ranks can be reduced."""
    has = targets.sum(dim=1) > 0
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hit = (targets.gather(1, top) > 0).float()
    out = {0: has.sum().float()}
    for k in ks:
        kk = min(k, kmax)
        out[k] = (hit[:, :kk].sum(dim=1) / k * has).sum()
    return out


class MetricsLog:
    """Rows of metrics to ``metrics.csv`` (the columns grow as new metrics appear: the file is
    rewritten then) and to TensorBoard when available. Main process only."""

    def __init__(self, folder: str | Path, tensorboard: bool = True):
        self.path = Path(folder) / "metrics.csv"
        self.columns: list[str] = []
        self.rows: list[dict] = []
        if self.path.exists():  # a resumed run continues its file
            with open(self.path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                self.columns = list(reader.fieldnames or [])
                self.rows = list(reader)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(Path(folder) / "tensorboard"))
            except ImportError:  # tensorboard is optional at run time
                self.tb = None

    def truncate_after(self, step: int) -> None:
        """On resume, rows logged after the checkpoint's step are dropped (they will be redone)."""
        keep = [r for r in self.rows if int(float(r.get("step") or 0)) <= step]
        if len(keep) != len(self.rows):
            self.rows = keep
            self._rewrite()

    def _rewrite(self) -> None:
        with atomic_file(self.path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=self.columns)
            w.writeheader()
            w.writerows(self.rows)

    def log(self, step: int, values: dict) -> None:
        row = {"step": step, **{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in values.items()}}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new or not self.path.exists():
            self.columns += new
            self._rewrite()
        else:
            with open(self.path, "a", newline="", encoding="utf-8") as fh:
                csv.DictWriter(fh, fieldnames=self.columns).writerow(row)
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
