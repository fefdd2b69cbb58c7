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

import torch


class ImageRing:
    """Batch image buffers that the workers fill and the main process copies out of, reused batch
    after batch instead of a fresh shared-memory buffer per batch (whose first touch costs a page
    fault per 4 KB, ~40 per 224 px image, 10-15% of the decode).

    The main process allocates them before the workers fork, so a batch crosses the process
    boundary as two integers (:class:`RingSlot`) instead of a shared-memory handle. Each worker
    owns ``slots`` buffers, used in turn, and a counting semaphore of its free ones: the worker
    takes one before it writes a batch, the main process gives it back once the batch is copied out
    (by the pin-memory thread into pinned memory, else by :class:`.shard_loader.ShardLoader` into memory of the
    batch's own). Both sides go through a worker's batches in the same order, so a buffer is never
    overwritten before it was copied out, however far ahead the DataLoader lets a worker run."""

    _live: dict[int, "ImageRing"] = {}
    _next_id = 0

    def __init__(self, workers: int, slots: int, shape: tuple):
        self.shape, self.slots = tuple(shape), slots
        self.buffers = [[torch.empty(self.shape, dtype=torch.uint8).share_memory_() for _ in range(slots)]
                        for _ in range(workers)]
        self.free: list = []
        self.id = ImageRing._next_id
        ImageRing._next_id += 1

    def start(self) -> None:
        """Fresh semaphores (all slots free), created before a stream's workers fork."""
        ctx = multiprocessing.get_context("fork")
        self.free = [ctx.Semaphore(self.slots) for _ in self.buffers]
        ImageRing._live[self.id] = self

    def stop(self) -> None:
        """Unblock workers waiting for a slot (a consumer that stopped mid-epoch) so they exit."""
        for sem in self.free:
            for _ in range(self.slots):
                sem.release()
        ImageRing._live.pop(self.id, None)

    def take(self, worker: int, count: int, parent: int) -> torch.Tensor:
        """The worker side: wait until the buffer of its batch number ``count`` is free."""
        while not self.free[worker].acquire(timeout=1.0):
            if os.getppid() != parent:   # the main process is gone
                raise SystemExit(1)
        return self.buffers[worker][count % self.slots]

    def copy_out(self, worker: int, slot: int, pin: bool) -> torch.Tensor:
        """The main side: the batch as a B x 3 x H x W channels_last tensor of its own, and the
        buffer back to the worker."""
        out = torch.empty(self.shape, dtype=torch.uint8, pin_memory=pin and torch.cuda.is_available())
        out.copy_(self.buffers[worker][slot])
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
