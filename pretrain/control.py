"""Stopping a run: stop requests (signals, the control file) and the ranks' agreement on a stop
or a non-finite loss.

Every log point the ranks agree, with one small all-reduce, on two flags: a non-finite loss on
any rank since the last check (the run stops with :class:`NonFiniteLoss`, keeping the last good
checkpoint: nothing is saved after a NaN) and a stop request on any rank (SIGUSR1, Slurm's
warning before the time limit; SIGTERM; or the file ``$WEBTAG_CONTROL_DIR/stop`` that
``slurm/pretrain_wt.sh``'s signal trap writes): the run saves a checkpoint and exits so that the
job can requeue itself.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import torch

from webtag.atomic import write_text_atomic

CONTROL_ENV = "WEBTAG_CONTROL_DIR"   # the Slurm scripts' trap writes <dir>/stop; we write <dir>/status


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf: the run stops; the last checkpoint stays the last good one."""


class StopRequest:
    """A stop asked for by a signal (SIGUSR1, SIGTERM) or by the control file."""

    def __init__(self):
        self.signalled: str | None = None
        control = os.environ.get(CONTROL_ENV)
        self.control_dir = Path(control) if control else None
        self._old = {}
        for sig in (signal.SIGUSR1, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook): the control file still works
                pass

    def _handle(self, signum, frame):
        self.signalled = signal.Signals(signum).name

    def requested(self) -> bool:
        return bool(self.signalled) or bool(self.control_dir and (self.control_dir / "stop").exists())

    def reason(self) -> str:
        return self.signalled or "control file"

    def status(self, text: str) -> None:
        if self.control_dir:
            self.control_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.control_dir / "status", text + "\n")

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def agree(accelerator, nonfinite: torch.Tensor, stop: StopRequest) -> tuple[bool, bool]:
    """All ranks: (a non-finite loss anywhere, a stop requested anywhere)."""
    device = accelerator.device
    flags = torch.stack([nonfinite.float().reshape(()).to(device),
                         torch.tensor(float(stop.requested()), device=device)])
    flags = accelerator.reduce(flags, reduction="sum")
    return bool(flags[0] > 0), bool(flags[1] > 0)
