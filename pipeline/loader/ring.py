"""The image ring: batch buffers in shared memory that the workers fill and the main process
copies out of, with a semaphore per worker that hands a buffer back only once it was copied.

A batch's images cross the process boundary as two integers (:class:`RingSlot`), not as a fresh
shared-memory tensor each (whose first touch costs a page fault per 4 KB: ~40 per 224 px image,
10-15% of the decode time in the measurement that introduced the ring; ``loader.reuse_buffers=false``
goes back to a fresh buffer per batch).
"""
from __future__ import annotations

import multiprocessing
import os

import numpy as np
import torch


class ImageRing:
    """Batch image buffers that the workers fill and the main process copies out of, reused batch
    after batch instead of a fresh shared-memory buffer per batch (whose first touch costs a page
    fault per 4 KB, ~40 per 224 px image, 10-15% of the decode).

    The main process allocates them before the workers fork, so a batch crosses the process
    boundary as two integers (:class:`RingSlot`) instead of a shared-memory handle. Each worker
    owns ``slots`` buffers, a counting semaphore of its free ones and a shared flag per buffer
    (busy): the worker takes a free one before it writes a batch and names it in the batch's
    :class:`RingSlot`; the main process gives it back (flag cleared, then the semaphore released)
    once the batch is copied out (by the pin-memory thread into pinned memory, else by
    :class:`.shard_loader.ShardLoader` into memory of the batch's own). So a buffer is never
    overwritten before it was copied out, however far ahead the DataLoader lets a worker run.

    The worker takes the lowest-numbered free buffer, not the next in turn: a worker that is not
    far ahead of the consumer (the usual case: it is the bottleneck) keeps reusing two buffers
    instead of cycling through all ``slots``. A forked worker takes a page fault per 4 KB on its
    first write to each shared buffer (its page tables do not have them): in turn, all 6 buffers
    of 64 x 224 px (~14k of the worker's 22k faults in bench/loader.py's 2,048-image runs)."""

    _live: dict[int, "ImageRing"] = {}
    _next_id = 0

    def __init__(self, workers: int, slots: int, shape: tuple):
        self.shape, self.slots = tuple(shape), slots
        self.buffers = [[torch.empty(self.shape, dtype=torch.uint8).share_memory_() for _ in range(slots)]
                        for _ in range(workers)]
        self.busy = torch.zeros((workers, slots), dtype=torch.uint8).share_memory_()
        self._busy = self.busy.numpy()
        self.free: list = []
        self.id = ImageRing._next_id
        ImageRing._next_id += 1

    def start(self) -> None:
        """Fresh semaphores (all slots free), created before a stream's workers fork."""
        ctx = multiprocessing.get_context("fork")
        self.free = [ctx.Semaphore(self.slots) for _ in self.buffers]
        self._busy[:] = 0
        ImageRing._live[self.id] = self

    def stop(self) -> None:
        """Unblock workers waiting for a slot (a consumer that stopped mid-epoch) so they exit."""
        for sem in self.free:
            for _ in range(self.slots):
                sem.release()
        ImageRing._live.pop(self.id, None)

    def take(self, worker: int, parent: int) -> tuple[int, torch.Tensor]:
        """The worker side: wait until one of its buffers is free; the lowest-numbered free one
        (its number and the buffer), marked busy."""
        while not self.free[worker].acquire(timeout=1.0):
            if os.getppid() != parent:   # the main process is gone
                raise SystemExit(1)
        flags = self._busy[worker]
        free = (flags == 0).nonzero()[0]
        slot = int(free[0]) if len(free) else 0   # none: the ring was stopped (the stream is closing)
        flags[slot] = 1
        return slot, self.buffers[worker][slot]

    def copy_out(self, worker: int, slot: int, pin: bool) -> torch.Tensor:
        """The main side: the batch as a B x 3 x H x W channels_last tensor of its own, and the
        buffer back to the worker."""
        out = torch.empty(self.shape, dtype=torch.uint8, pin_memory=pin and torch.cuda.is_available())
        # numpy's single-threaded copy, not Tensor.copy_: a 9.6 MB copy_ runs on torch's OpenMP
        # pool, whose threads then spin-wait for more work; in bench/loader.py (2 cores, 1 worker)
        # that spinning was 0.20 of the main process's 0.45 CPU-s per 2,048 images (cProfile with
        # a CPU-time clock), CPU the worker did not get
        np.copyto(out.numpy(), self.buffers[worker][slot].numpy())
        self._busy[worker, slot] = 0
        self.free[worker].release()
        return out.permute(0, 3, 1, 2)


class RingSlot:
    """What a worker sends for a batch's images: which ring, worker and buffer hold them. The
    pin-memory thread calls :meth:`pin_memory`; without it, :class:`.shard_loader.ShardLoader` calls
    :meth:`materialize`."""

    __slots__ = ("ring", "worker", "slot")

    def __init__(self, ring: int, worker: int, slot: int):
        self.ring, self.worker, self.slot = ring, worker, slot

    def __getstate__(self):
        return (self.ring, self.worker, self.slot)

    def __setstate__(self, state):
        self.ring, self.worker, self.slot = state

    def materialize(self, pin: bool = False) -> torch.Tensor:
        return ImageRing._live[self.ring].copy_out(self.worker, self.slot, pin)

    def pin_memory(self, device=None) -> torch.Tensor:
        return self.materialize(pin=True)
