"""The image ring: batch buffers in shared memory that the workers fill and the main process
lends out (or copies out of), with a semaphore per worker that hands a buffer back only once the
batch's images are no longer used.

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


# buffers per worker never lent: one for the worker to fill, one for the main process to take
KEEP_FREE = 2


class ImageRing:
    """Batch image buffers that the workers fill and the main process lends out, reused batch
    after batch instead of a fresh shared-memory buffer per batch (whose first touch costs a page
    fault per 4 KB, ~40 per 224 px image, 10-15% of the decode).

    The main process allocates them before the workers fork, so a batch crosses the process
    boundary as two integers (:class:`RingSlot`) instead of a shared-memory handle. Each worker
    owns ``slots`` buffers, a counting semaphore of its free ones and a shared flag per buffer
    (busy): the worker takes a free one before it writes a batch and names it in the batch's
    :class:`RingSlot`; the main process gives it back (flag cleared, then the semaphore released)
    once the batch no longer needs it. So a buffer is never overwritten while its batch is in
    use, however far ahead the DataLoader lets a worker run. Two ways out of the ring:

    - :meth:`lend` (no pinned memory: :class:`.shard_loader.ShardLoader`): the batch's ``image``
      is a view of the ring buffer itself, no copy. Its storage holds a :class:`_Lease`, and the
      buffer goes back to the worker when the last tensor that uses that storage (the batch's
      image, any view or slice of it) is freed, however long the consumer keeps it. The copy it
      replaces cost the main process ~36 us per 224 px image (a 9.6 MB copy and a fresh 9.6 MB
      allocation per batch of 64), CPU the workers lose on a busy machine. A consumer that
      keeps many batches (a list of an epoch's images) would hold every buffer and stall its
      worker: at most :attr:`loan_limit` buffers per worker are on loan (``slots`` less
      :data:`KEEP_FREE`: one left for the worker to fill while the main process takes the
      other), later batches are copied out instead (:meth:`copy_out`) while that many are in use;
    - :meth:`copy_out` (the pin-memory thread: into pinned memory; past the loan limit): the
      batch in memory of its own, the buffer back at once.

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
        self.active = False
        self.lent: list[set[int]] = [set() for _ in range(workers)]   # buffers whose views are in use
        self.id = ImageRing._next_id
        ImageRing._next_id += 1

    def start(self) -> None:
        """Fresh semaphores, created before a stream's workers fork: every buffer free but those
        still lent out (batches of an earlier stream that are still in use)."""
        ctx = multiprocessing.get_context("fork")
        self._busy[:] = 0
        for worker, slots in enumerate(self.lent):
            for slot in list(slots):
                self._busy[worker, slot] = 1
        self.free = [ctx.Semaphore(self.slots - int(self._busy[w].sum())) for w in range(len(self.buffers))]
        self.active = True
        ImageRing._live[self.id] = self

    def stop(self) -> None:
        """Unblock workers waiting for a slot (a consumer that stopped mid-epoch) so they exit."""
        self.active = False
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
        if not len(free):   # none: the ring was stopped (the stream is closing); a lent buffer is in use
            return 0, torch.empty(self.shape, dtype=torch.uint8)     # so a scratch one nobody reads
        slot = int(free[0])
        flags[slot] = 1
        return slot, self.buffers[worker][slot]

    @property
    def loan_limit(self) -> int:
        """Buffers of one worker that may be on loan at once."""
        return self.slots - KEEP_FREE

    def lend(self, worker: int, slot: int) -> torch.Tensor:
        """The main side, no pinned memory: the batch as a B x 3 x H x W channels_last view of the
        ring buffer, which goes back to the worker when the view (and every tensor made from
        it) is freed; copied out instead while :attr:`loan_limit` of the worker's are on loan."""
        if len(self.lent[worker]) >= self.loan_limit:
            return self.copy_out(worker, slot, False)
        self.lent[worker].add(slot)
        return torch.from_numpy(np.asarray(_Lease(self, worker, slot))).permute(0, 3, 1, 2)

    def _give_back(self, worker: int, slot: int) -> None:
        """A lent buffer is no longer used: free for its worker (a stopped ring's next start()
        counts it free)."""
        self.lent[worker].discard(slot)
        self._busy[worker, slot] = 0
        if self.active:
            self.free[worker].release()

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
        ring = ImageRing._live[self.ring]
        return ring.copy_out(self.worker, self.slot, pin) if pin else ring.lend(self.worker, self.slot)

    def pin_memory(self, device=None) -> torch.Tensor:
        return self.materialize(pin=True)


class _Lease:
    """A lent ring buffer as numpy sees it (``__array_interface__``): the array made from it, and
    the tensor made from that array, keep it alive; freed with the last of them, it gives the
    buffer back (:meth:`ImageRing._give_back`)."""

    __slots__ = ("ring", "worker", "slot", "buffer", "__array_interface__")

    def __init__(self, ring: ImageRing, worker: int, slot: int):
        self.ring, self.worker, self.slot = ring, worker, slot
        self.buffer = buf = ring.buffers[worker][slot]
        self.__array_interface__ = {"shape": tuple(buf.shape), "typestr": "|u1", "version": 3,
                                    "data": (buf.data_ptr(), False)}

    def __del__(self):
        try:
            self.ring._give_back(self.worker, self.slot)
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to give it back to
            pass
