"""Stopping a run: stop requests (signals, the control file) and the ranks' agreement on a stop
or a non-finite loss.

Every log point the ranks agree, with one small all-reduce, on two flags: a non-finite loss on
any rank since the last check (the run stops with :class:`NonFiniteLoss`, keeping the last good
checkpoint: nothing is saved after a NaN) and a stop request on any rank (SIGUSR1, Slurm's
warning before the time limit; SIGTERM, what preemption, ``scancel`` and the time limit send to
every process of the job, SIGKILL following after KillWait, 30 s by default; or the file
``$WEBTAG_CONTROL_DIR/stop`` that ``slurm/pretrain_job.sh``'s signal trap writes): the run saves
a checkpoint and exits "stopped" (exit 0) so that the job can requeue itself.

A log point can be minutes away (``train.log_every``), too late for KillWait, so between them
:class:`StepStopCheck` looks for a stop signal every ``train.stop_check_every`` optimizer steps
(default 1). Signals only: they are the urgent path (Slurm's TERM reaches the training processes
directly); the control file is the early warning (USR1 to the batch shell, 300 s ahead) and is
read at log points. Alone, the check is a look at the local flag; on several ranks, an all-reduce of the flag that
every rank starts at the same steps, on a CPU (gloo) group of its own and asynchronously, and
reads one check later, so no rank waits for it and the GPU stream is never synchronised. All
ranks read the same sum at the same step, so they stop at the same step, at most two checks
after the first signal arrived. (A check only on the signalled ranks could not work: the ranks
would call the collective a different number of times, and Slurm's signals reach them at
different steps.)
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import torch
import torch.distributed as dist

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


class StepStopCheck:
    """The stop check between log points: called by every rank after every optimizer step, it
    says on all ranks at the same step whether a stop signal reached any rank (see the module
    docstring). ``every``: check every that many steps (0: never; the log points still check)."""

    def __init__(self, accelerator, stop: StopRequest, every: int):
        self.stop, self.every = stop, max(0, int(every))
        self.flag = torch.zeros(1)
        self.group = self.pending = None
        self.distributed = accelerator.num_processes > 1 and dist.is_available() and dist.is_initialized()
        if self.every and self.distributed:
            # a collective: every rank creates it, here in the same order as every other group
            self.group = dist.new_group(backend="gloo")

    def __call__(self, step: int) -> bool:
        if not self.every or step % self.every:
            return False
        if not self.distributed:
            return bool(self.stop.signalled)
        agreed = False
        if self.pending is not None:
            self.pending.wait()
            self.pending = None
            agreed = bool(self.flag.item() > 0)
        if not agreed:
            self.flag.fill_(float(bool(self.stop.signalled)))
            self.pending = dist.all_reduce(self.flag, group=self.group, async_op=True)
        return agreed

    def close(self) -> None:
        """Wait for the all-reduce in flight (every rank calls this when its loop ends)."""
        if self.pending is not None:
            try:
                self.pending.wait()
            finally:
                self.pending = None
