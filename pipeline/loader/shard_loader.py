"""The loader of one rank: a split's shards, epoch after epoch, through DataLoader workers.

It plans the epoch (:mod:`.plan`), forks the workers (:mod:`.worker`) over a DataLoader with the
identity collate function (the workers batch themselves), hands out each batch's images as a
view of its ring buffer (:meth:`.ring.ImageRing.lend`: no copy; the buffer goes back to the
worker when the batch's images are freed) unless the pin-memory thread copied them into pinned
memory, and keeps the resumable position: the
epoch and the shards whose every sample has been delivered (each batch's
``BatchMeta.shards_done``). In training the workers are kept across epochs.
"""
from __future__ import annotations

import contextlib
import gc
import os
import signal
from pathlib import Path
from typing import Iterable, Iterator

# numpy imports numpy.random lazily, and every DataLoader worker calls np.random.seed as it
# starts: imported here, in the main process before the workers fork, so that a worker does not
# import it itself (14 ms of each worker's start, measured in a forked child on the 2-core VM:
# ~1% of bench/loader.py's 2-epoch run of 1,000 images from a cold start)
import numpy.random  # noqa: F401
from torch.utils.data import DataLoader

from webtag.storage import location

from .. import schema
from .collate import BatchMeta, EpochMarker, as_tensors
from .config import LoaderConfig
from .paths import batch_path
from .plan import EpochPlanner, WorkerPlan
from .ring import ImageRing, RingSlot
from .sampling import shard_repeat_factors
from .worker import StreamDataset, keep_heap


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}   # ignored in the workers


class _WorkerInit:
    """worker_init_fn: SIGTERM and SIGINT are ignored in the workers, and with ``loader.worker_nice``
    their scheduling priority is lowered.

    Slurm (preemption, scancel, the time limit) sends SIGTERM to every process of the job, and a
    terminal's Ctrl-C sends SIGINT to the whole foreground process group: a worker killed by it
    makes the DataLoader raise "worker ... killed by signal" in the training process before that
    can save its checkpoint. The training process decides (:class:`pretrain.control.StopRequest`);
    the workers end as before: when the loader closes them (its shutdown and the ring's release,
    :meth:`_Stream.close`), or when the main process is gone (the DataLoader's watchdog and
    :meth:`.ring.ImageRing.take` check the parent). A lower priority (nice) keeps the training
    process (which launches the GPU work) from being the one kept waiting when as many workers
    as cores are busy. And the worker's allocator is set for its shuffle buffer
    (:func:`.worker.keep_heap`).

    The objects the worker inherited from the fork (torch's and the trainer's modules, the
    dataset: ~190k objects in bench/loader.py) are frozen (``gc.freeze``): the worker's cyclic
    collections no longer walk them. A full collection walked all of them and wrote to each one's
    header, so that it copied every page they lie on from the main process (copy-on-write): in
    the eighth epoch of a 1,000-image loader with one worker, its unshared memory (USS) went from
    33 to 71 MiB for good (frozen: 34 MiB through twelve epochs), and it took 149 ms (the
    worker's code in one process under load, ten epochs: 15 us per image, besides gen 0/1's 5).
    Objects frozen are never collected: what of them becomes cyclic garbage in the worker stays
    until it exits."""

    def __init__(self, increment: int):
        self.increment = increment

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if hasattr(signal, "pthread_sigmask"):   # blocked since the fork (_deaf_fork): a TERM that
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)   # came meanwhile is dropped
        if self.increment:
            os.nice(self.increment)
        keep_heap()
        gc.freeze()


@contextlib.contextmanager
def _deaf_fork():
    """SIGTERM and SIGINT blocked in this thread while the DataLoader forks its workers: a forked
    worker starts with them blocked and unblocks them once it ignores them (:class:`_WorkerInit`),
    so a TERM that reaches the job while workers start (a preemption at the start of an epoch)
    cannot kill one before it ignores TERM. Here a signal that came meanwhile is delivered when
    the mask is restored, not lost."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _as_is(batch):
    """collate_fn: the worker's batch goes through unchanged (not numpy -> tensor in the worker)."""
    return batch


class _Stream:
    """A DataLoader iterator whose workers are producing batches of ``epoch`` (and on)."""

    def __init__(self, batches, ring: ImageRing | None, epoch: int):
        self.batches, self.ring, self.epoch = batches, ring, epoch

    def close(self) -> None:
        if self.ring is not None:
            self.ring.stop()
        shutdown = getattr(self.batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self.batches = None


class ShardLoader:
    """Batches of one rank over a split's shards (``SHARDS/train``), epoch after epoch.

    A batch is a dict of tensors: ``image`` (uint8 B x 3 x S x S, channels_last; None with
    ``decode=gpu``, see :mod:`.paths`; without pinned memory a view of a shared ring buffer that
    stays the batch's own until the last tensor using it is freed), the packed labels of :func:`.collate.collate`, and
    ``meta``, its :class:`.collate.BatchMeta`."""

    def __init__(self, split_dir: str | Path, cfg: LoaderConfig, rank: int = 0, world_size: int = 1,
                 num_keywords: int | None = None, shards: list[str] | None = None):
        """``shards``: read only these shards of the split (e.g. all but a held-out few);
        ``num_keywords``: the vocabulary size, for keyword sampling (default: from the manifest)."""
        self.split_dir = location(split_dir)     # a Path, or a URL / pipe: location (webtag.storage)
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        if cfg.batch_size % max(1, cfg.repeat_aug):
            raise ValueError(f"batch_size {cfg.batch_size} is not a multiple of repeat_aug {cfg.repeat_aug}")
        self.sizes = schema.read_sizes(self.split_dir)
        if shards is not None:
            unknown = sorted(set(shards) - set(self.sizes))
            if unknown:
                raise ValueError(f"{self.split_dir / schema.SIZES_FILE} lists no shard {unknown[:5]}")
            keep = set(shards)
            self.sizes = {s: n for s, n in self.sizes.items() if s in keep}
        self.repeat = None
        if cfg.train and cfg.sampling != "instance":
            self.repeat = shard_repeat_factors(self.split_dir, self.sizes, cfg.sampling, cfg.keyword_threshold,
                                               num_keywords, (cfg.balance_over, cfg.balanced_cap, cfg.epoch_draws))
        if self.repeat is None:
            self.expected = {s: float(n) for s, n in self.sizes.items()}
        else:
            self.expected = {s: float(r.sum()) for s, r in self.repeat.items()}
        self.epoch = 0
        self.consumed: set[str] = set()
        self.bad_samples = 0          # samples lost: counted against the manifest (.bad), summed over epochs
        self.remote_retries = 0       # remote reads the workers retried (webtag.storage), summed over epochs
        self.path = batch_path(cfg)
        self._ring: ImageRing | None = None   # the workers' batch buffers, kept across epochs
        self._stream: _Stream | None = None    # workers already streaming self.epoch (see __iter__)
        self.planner = EpochPlanner(self.expected, cfg.seed, world_size, cfg.workers, cfg.images_per_batch,
                                    shuffle=cfg.train)

    def _plans(self) -> list[list[WorkerPlan]]:
        return self.planner(self.epoch, self.consumed)

    def __len__(self) -> int:
        """Batches this rank yields in the current (remaining) epoch: the same on every rank."""
        return sum(w.batches for w in self._plans()[self.rank])

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, set()

    def state_dict(self, in_flight: Iterable[BatchMeta] = ()) -> dict:
        """The resumable position. ``in_flight``: batches already taken from the loader but not
        yet used (a device prefetcher's): their shards do not count as consumed."""
        undelivered = {s for meta in in_flight for s in meta.shards_done}
        return {"epoch": self.epoch, "consumed": sorted(self.consumed - undelivered)}

    def load_state_dict(self, state: dict) -> None:
        unknown = set(state["consumed"]) - set(self.sizes)
        if unknown:
            raise ValueError(f"the checkpoint's loader state names shards that {self.split_dir} lacks: "
                             f"{sorted(unknown)[:5]}")
        self.epoch, self.consumed = int(state["epoch"]), set(state["consumed"])

    def _open_stream(self, plans: list[WorkerPlan]) -> _Stream:
        workers = max(1, self.cfg.workers)
        fork = hasattr(os, "fork")
        ring = None
        if self.cfg.reuse_buffers and fork and self.path.uses_ring:
            if self._ring is None:
                s = self.cfg.image_size
                self._ring = ImageRing(workers, max(1, self.cfg.prefetch_factor) + 2, (self.cfg.batch_size, s, s, 3))
            ring = self._ring
            ring.start()
        # training streams on into the next epochs; evaluation reads one epoch and stops
        ds = StreamDataset(self.split_dir, self.cfg, plans, self.repeat, self.epoch, self.rank, ring,
                           self.planner if self.cfg.train else None, sizes=self.sizes)
        dl = DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=self.cfg.pin_memory,
                        collate_fn=_as_is,
                        worker_init_fn=_WorkerInit(self.cfg.worker_nice),
                        prefetch_factor=self.cfg.prefetch_factor, persistent_workers=False,
                        multiprocessing_context="fork" if fork else None)
        with _deaf_fork():   # the workers fork here
            batches = iter(dl)
        return _Stream(batches, ring, self.epoch)

    def close(self) -> None:
        """Stop the workers (they otherwise stream on into the next epoch until the loader is gone)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: the workers die with the process
            pass

    def __iter__(self) -> Iterator[dict]:
        """One epoch (what is left of it). The workers do not stop at its end: in training they go
        on into the next epoch, planned by themselves, so the next ``iter()`` finds its first
        batches ready (no worker start-up, no emptied pipeline at epoch boundaries). After
        ``load_state_dict`` or ``set_epoch`` to another epoch, or an epoch left before its end, the
        next ``iter()`` starts fresh workers."""
        plans = self._plans()[self.rank]
        stream, self._stream = self._stream, None
        if stream is None or stream.epoch != self.epoch or self.consumed:
            if stream is not None:
                stream.close()
            stream = self._open_stream(plans)
        complete = False
        try:
            n = sum(w.batches for w in plans)
            while n:
                batch = next(stream.batches)
                if type(batch) is EpochMarker:    # a worker with fewer batches than the busiest one
                    continue
                n -= 1
                meta: BatchMeta = batch["meta"]
                if meta.epoch != self.epoch:   # a bug, not bad data: the plans of main and workers differ
                    raise RuntimeError(f"loader stream out of step: a batch of epoch {meta.epoch} in epoch {self.epoch}")
                if isinstance(batch.get("image"), RingSlot):   # not pinned: a view of the ring (lent)
                    batch["image"] = batch["image"].materialize()
                batch = as_tensors(batch)
                self.consumed.update(meta.shards_done)
                self.bad_samples += meta.bad_samples
                self.remote_retries += meta.remote_retries
                yield batch
            complete = True
        finally:
            if complete and self.cfg.train:
                stream.epoch = self.epoch + 1
                self._stream = stream
            else:
                stream.close()
        # the epoch is over: the next one starts from a fresh shuffle
        self.epoch += 1
        self.consumed = set()
