"""One worker's batches, epoch after epoch: the sample stream (:mod:`.stages`), then decode,
augment and batch (:mod:`.paths`), exactly the worker's quota per epoch.

:class:`StreamDataset` is what the DataLoader forks; each worker builds its own
:class:`WorkerStream` (its id, RNGs) when it starts iterating. In training a
worker streams on into the next epoch, which it plans itself (:class:`.plan.EpochPlanner`), so
epoch boundaries cost no worker restart. Every worker hands over the same number of items per
epoch (an :class:`.collate.EpochMarker` for each batch it has fewer than the rank's busiest
worker), so the DataLoader's round-robin never mixes two epochs.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from webtag import storage

from .. import schema
from .augment import CpuAugment
from .bad import BadSamples
from .collate import BatchMeta, EpochMarker, collate
from .config import LoaderConfig
from .paths import batch_path
from .plan import EpochPlanner, WorkerPlan
from .ring import ImageRing, RingSlot
from .stages import sample_stream
from .tar import read_shard


MMAP_THRESHOLD = 32 << 20      # glibc's own ceiling for its dynamic mmap threshold (64-bit)
TRIM_THRESHOLD = 2**31 - 1         # no trim: the freed samples are wanted again in the next pass


def keep_heap() -> bool:
    """In a worker: glibc's malloc keeps the memory of freed samples for the next ones, instead of
    mapping a fresh region for each JPEG above its mmap threshold (128 KB at first, raised only
    by frees of mapped chunks) and handing freed memory at the heap's top back to the OS (trim).

    The shuffle buffer holds ``shuffle_buffer`` samples, frees them in random order and drains
    at the end of every pass, so with real photos (130 KB mean) the defaults kept mapping,
    faulting in, zeroing and unmapping memory: the sample stream (:func:`.stages.sample_stream`
    alone, one process, best of 7 epochs of bench/loader.py's 1,000 photos, 2-core VM) cost
    107-114 us per sample; with the mmap threshold at glibc's 32 MB ceiling and the trim
    threshold at twice that (where glibc's dynamic rule would take them) 92-97 us, with no trim
    alone 72-74 us, with both settings here 41-42 us (generated 12 KB JPEGs, under the
    threshold: 21-31 us either way). The price: a worker keeps its peak heap (about its shuffle buffer's samples and a decode's
    buffers), which every pass needs again anyway. Returns whether the settings took (glibc)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # not glibc
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def read_ahead(samples: Iterator, n: int, max_bytes: float = float("inf")) -> Iterator:
    """``samples`` unchanged, but pulled from the stream ``n`` at a time (``loader.read_ahead``),
    or fewer once their JPEGs hold ``max_bytes`` (``loader.read_ahead_mb``: large photos), so
    that the decodes run back to back instead of each between two stretches of the stream's
    own code (tar members, label checks, the shuffle draw).

    Interleaved, the decodes ran slower than in the plain loop's tight repetition although they
    execute the same instructions (callgrind: the loader's +1.6% is about the stream's own work):
    the stream's code and reads in between cost the decoder what it keeps in the CPU's caches
    and predictors. Measured on the 2-core VM (Intel Xeon, 2 MB L2 per core), 1,000 generated
    12 KB JPEGs, the worker's own CPU per image in the epochs after the first, 1 and 1,000 samples
    ahead alternated in one run: 1,037-1,113 against 940-1,064 us (stream 54-60 against 40-43 us,
    decode + crop 952-1,027 against 877-993 us); in one process, stream and decode interleaved
    cost 102 us per image more than the plain loop, 64 ahead 54, 256 ahead 42, the whole epoch
    ahead 6 (median of 15 paired rounds). The order and the batches are the same; a finished
    shard still travels with its last sample's batch (the resumable position), while a sample
    lost in reading is reported with the batch being built when it was read (up to ``n``
    samples early; the totals are the same). The price is memory: ``n`` more samples' JPEG
    bytes per worker besides its shuffle buffer, at most ``max_bytes`` and one sample."""
    chunk, held = [], 0
    for item in samples:
        chunk.append(item)
        held += len(item[0].get(schema.IMAGE_EXT, b""))
        if len(chunk) >= n or held >= max_bytes:
            yield from chunk
            chunk, held = [], 0
    yield from chunk


class StreamDataset(IterableDataset):
    """Epoch ``epoch`` of one rank (``plans``: one per worker, shards already consumed left out),
    then, with ``planner``, the epochs after it."""

    def __init__(self, split_dir: Path, cfg: LoaderConfig, plans: list[WorkerPlan], repeat, epoch: int,
                 rank: int, ring: ImageRing | None = None, planner: EpochPlanner | None = None,
                 sizes: dict[str, int] | None = None):
        """``sizes``: samples per shard (the manifest's counts), what lost samples are counted
        against; default: the split's ``sizes.json``."""
        self.split_dir, self.cfg, self.plans, self.repeat = split_dir, cfg, plans, repeat
        self.epoch, self.rank, self.ring, self.planner = epoch, rank, ring, planner
        self.sizes = sizes if sizes is not None else schema.read_sizes(split_dir)

    def __iter__(self):
        info = get_worker_info()
        if info is None and len(self.plans) > 1:
            raise RuntimeError("the loader plans one stream per worker: use workers >= 1")
        return WorkerStream(self, info.id if info is not None else 0, in_worker=info is not None).batches()


class WorkerStream:
    """The state of one worker: its id and the main process it belongs to."""

    def __init__(self, ds: StreamDataset, worker: int, in_worker: bool):
        self.ds, self.cfg, self.worker, self.in_worker = ds, ds.cfg, worker, in_worker
        self.parent = os.getppid()
        self.path_cls = batch_path(ds.cfg)

    def batches(self):
        epoch, plans = self.ds.epoch, self.ds.plans
        while True:
            yield from self.epoch(epoch, plans)
            if self.ds.planner is None:
                return
            epoch += 1
            plans = self.ds.planner(epoch)[self.ds.rank]

    def epoch(self, epoch: int, plans: list[WorkerPlan]):
        """This worker's batches of one epoch: exactly its quota, then the markers. Samples lost
        (counted in samples: :mod:`.bad`) are made up by padding: shards read again, and copies of
        the epoch's first good image for JPEGs that cannot be decoded."""
        plan, cfg = plans[self.worker], self.cfg
        m = max(1, cfg.repeat_aug)
        aug = CpuAugment(cfg, random.Random(str(self.seed(epoch))))
        bad = BadSamples(cfg.log_bad_every_s)
        samples = self.samples(epoch, plans, bad)
        path = self.path_cls(cfg, self.buffer)
        items, done, filler, emitted = [], [], None, 0
        retries_seen = storage.RETRIES

        def batch():
            nonlocal items, done, emitted, retries_seen
            out = collate(items, BatchMeta(epoch, tuple(done), bad.since_last(), storage.RETRIES - retries_seen))
            retries_seen = storage.RETRIES
            out.update(path.fields())
            items, done = [], []
            emitted += 1
            return out

        for sample, padding, finished in samples:          # decode -> augment -> batch
            done.extend(finished)
            try:
                path.add(len(items), sample[schema.IMAGE_EXT], aug, m)
            except Exception as exc:  # noqa: BLE001 - a corrupt JPEG must not stop training
                if not padding:    # a padding copy's loss was counted when it was read for real
                    bad.lost(f"sample {sample['__key__']}", 1, f"cannot decode: {exc}")
                continue
            items.extend([(sample["labels"], padding)] * m)
            if filler is None:
                filler = (path.filler(len(items) - m, m), items[-m:])
            if len(items) == cfg.batch_size:
                yield batch()
        while emitted < plan.batches:   # undecodable JPEGs left the quota short: padding copies
            if filler is None:
                filler = self._filler(path, len(items), aug, m, plan.shards + self.fallback(plans))
                items.extend(filler[1])
                continue
            while len(items) < cfg.batch_size:
                path.put_filler(len(items), filler[0])
                items.extend((labels, True) for labels, _ in filler[1])
            yield batch()
        for _ in range(max(w.batches for w in plans) - plan.batches):
            yield EpochMarker(epoch)

    def fallback(self, plans: list[WorkerPlan]) -> list[str]:
        """Where padding comes from when this worker's own shards give nothing: the rank's others,
        then the split's."""
        return [s for i, w in enumerate(plans) if i != self.worker for s in w.shards] + list(self.ds.sizes)

    def seed(self, epoch: int) -> list[int]:
        """The seed of this worker's randomness in one epoch (its stream's order, its
        augmentations): the run's seed, the epoch, the rank and the worker, so that every worker of
        every rank draws its own, the same again when the run is resumed."""
        return [self.cfg.seed, epoch, self.ds.rank, self.worker]

    def samples(self, epoch: int, plans: list[WorkerPlan], bad: BadSamples) -> Iterator:
        """This worker's samples of one epoch, read ahead (what :meth:`epoch` decodes), as
        (sample, is_padding, shards finished); ``bad`` counts what is lost."""
        plan, cfg = plans[self.worker], self.cfg
        rng = np.random.default_rng(self.seed(epoch))
        samples = sample_stream(self.ds.split_dir, plan, plan.batches * cfg.images_per_batch, self.ds.repeat,
                                cfg.shuffle_buffer if cfg.train else 1, rng, bad, self.ds.sizes, self.fallback(plans),
                                spread=cfg.images_per_batch if self.ds.repeat is not None else 0)
        return read_ahead(samples, cfg.read_ahead, cfg.read_ahead_mb * 2**20)

    def _filler(self, path, row: int, aug: CpuAugment, m: int, shards: list[str]):
        """No image of this worker's stream decoded: the first one of ``shards`` that does, put at
        ``row`` as padding, and its filler."""
        muted = BadSamples(float("inf"))
        for shard in dict.fromkeys(shards):
            for sample in read_shard(self.ds.split_dir / shard, muted):
                try:
                    path.add(row, sample[schema.IMAGE_EXT], aug, m)
                except Exception:  # noqa: BLE001 - look on
                    continue
                return path.filler(row, m), [(sample["labels"], True)] * m
        raise RuntimeError(f"no decodable image in any shard of {self.ds.split_dir}: cannot fill the epoch")

    def buffer(self) -> tuple[np.ndarray, object]:
        """A batch's image buffer, N x H x W x C (numpy view, filled in place) and what the batch
        carries for it: the B x 3 x H x W view, channels_last as the model wants it, or the
        :class:`.ring.RingSlot` of a ring buffer."""
        s = self.cfg.image_size
        shape = (self.cfg.batch_size, s, s, 3)
        ring = self.ds.ring
        if not self.in_worker:
            nhwc = torch.empty(shape, dtype=torch.uint8)
            images = nhwc.permute(0, 3, 1, 2)
        elif ring is not None:
            slot, nhwc = ring.take(self.worker, self.parent)
            images = RingSlot(ring.id, self.worker, slot)
        else:   # reuse_buffers off: a fresh shared-memory buffer per batch
            nhwc = torch.empty(shape, dtype=torch.uint8).share_memory_()
            images = nhwc.permute(0, 3, 1, 2)
        return nhwc.numpy(), images
