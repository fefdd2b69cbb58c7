"""What a run reports between two log points: the metrics window (loss, images/s, data wait),
when a step is due for a log line, an evaluation or a checkpoint, and how the row is shown
(progress bar, or a log line per log point with ``train.progress=false``)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

log = logging.getLogger("pretrain.trainer")


@dataclass(frozen=True)
class Due:
    """What optimizer step ``step`` must do (``train.log_every / eval_every / checkpoint_every``)."""
    last: bool
    checkpoint: bool
    evaluate: bool
    log: bool

    @classmethod
    def at(cls, step: int, total: int, tc) -> "Due":
        last = step >= total
        ckpt = bool(tc.checkpoint_every) and step % tc.checkpoint_every == 0
        ev = bool(tc.eval_every) and step % tc.eval_every == 0
        return cls(last, ckpt, ev or last, last or ckpt or ev or step % tc.log_every == 0)


class MetricsWindow:
    """Sums over the micro-batches since the last log point, kept on the device (no sync per
    step): the loss (non-finite values counted apart), images over all ranks, wall time."""

    def __init__(self, device, processes: int):
        self.processes = processes
        self.loss_sum = torch.zeros((), device=device)
        self.nonfinite = torch.zeros((), device=device)
        self.reset()

    def reset(self) -> None:
        self.loss_sum.zero_()
        self.nonfinite.zero_()
        self.count, self.images, self.t0 = 0, 0, time.perf_counter()

    def add(self, loss: torch.Tensor, images: int) -> None:
        """``loss``: detached, not synchronised."""
        self.nonfinite += (~torch.isfinite(loss)).float()
        self.loss_sum += torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0)
        self.count += 1
        self.images += images * self.processes

    def row(self, accelerator, waited: float) -> dict:
        """The window's figures, the loss averaged over ranks (a collective: every rank calls it)."""
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        loss = float(accelerator.reduce(self.loss_sum, reduction="mean")) / max(1, self.count)
        return {"loss": loss, "images_per_s": self.images / elapsed, "data_wait": waited / elapsed}


class Report:
    """The progress bar (main process, ``train.progress``) or a log line per row."""

    def __init__(self, enabled: bool, bar: bool, total: int, initial: int, desc: str):
        from tqdm import tqdm
        self.enabled, self.use_bar, self.total = enabled, bar, total
        self.bar = tqdm(total=total, initial=initial, disable=not (enabled and bar), desc=desc, unit="step",
                        dynamic_ncols=True, mininterval=2.0)

    def step(self) -> None:
        self.bar.update(1)

    def show(self, step: int, row: dict) -> None:
        if not self.enabled:
            return
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.3g}",
                             img_s=f"{row['images_per_s']:.0f}", wait=f"{row['data_wait']:.0%}")
        if not self.use_bar:
            log.info("step %d/%d %s", step, self.total,
                     " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

    def close(self) -> None:
        self.bar.close()
