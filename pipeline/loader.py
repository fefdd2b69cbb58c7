"""Streaming loader over our WebDataset shards, for pretraining and finetuning.

    shard list -> deterministic per-epoch shuffle -> split by node (rank) -> split by worker
    -> tar reading that survives bad members -> repeat-factor sampling -> shuffle buffer
    -> decode -> augment -> batch

Every rank yields the same number of batches per epoch, so DDP never waits on a rank that ran
out of data: shards are dealt to ranks and then to workers by expected sample count (largest
load first), the epoch length is the largest rank's need, and a worker that runs out of its
shards before its quota pads by reading its shards again (those samples are marked
``padding``, like DistributedSampler's). Counts come from ``sizes.json`` and
``manifest.parquet``: no tar is scanned to plan an epoch.

Resume: batches carry the shards whose every sample has now been delivered; the loader's
``state_dict()`` (epoch + consumed shards; gather it over ranks with :func:`merge_states`) goes
into the training checkpoint, and after ``load_state_dict`` the epoch continues with the shards
not yet consumed: none is read twice in an epoch, none skipped. A shard partly delivered when
the job stopped is read again from its start (shard granularity).

Batches are dicts of uint8 images (``B x 3 x H x W`` in channels_last memory layout; normalise
and colour-jitter on the GPU with :mod:`pipeline.gpu_augment`) and packed labels (see
:func:`collate`).

Process boundary: workers write crops straight into a ring of batch buffers that the main process
allocated before forking them (:class:`_ImageRing`), so a batch's images cross as two integers;
labels cross as small numpy arrays. In training the workers stream on into the next epoch, which
they plan themselves (:class:`EpochPlanner`), so epoch boundaries cost no worker restart.
"""
from __future__ import annotations

import io
import itertools
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pyarrow.parquet as pq
try:
    from orjson import loads as _json_loads   # 6x faster on our label records
except ImportError:  # pragma: no cover - orjson is a dependency; plain json still works
    from json import loads as _json_loads
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from . import schema
from .sampling import class_repeat_factors, copies, keyword_repeat_factors

log = logging.getLogger(__name__)


@dataclass
class LoaderConfig:
    batch_size: int = 256                 # images per batch and rank (with repeat_aug: copies count)
    workers: int = 8                      # DataLoader worker processes per rank
    shuffle_buffer: int = 2000            # samples
    sampling: Literal["instance", "class", "sqrt", "keyword"] = "instance"
    keyword_threshold: float = 0.001      # t of keyword repeat-factor sampling
    repeat_aug: int = 1                   # m augmented copies of each image in one batch (MultiGrain RA)
    train: bool = True                    # False: no shuffle, no sampling, centre crop
    image_size: int = 224
    crop_pct: float = 0.875               # eval: resize the shorter side to image_size / crop_pct
    scale: list[float] = field(default_factory=lambda: [0.08, 1.0])     # RandomResizedCrop
    ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    hflip: float = 0.5
    decode: Literal["pil", "torchvision", "gpu"] = "pil"  # gpu: workers ship JPEG bytes + crop boxes
    seed: int = 0
    log_bad_every_s: float = 30.0
    pin_memory: bool = False
    prefetch_factor: int = 4
    worker_nice: int = 0                  # raise the workers' niceness: the training process keeps its core
    reuse_buffers: bool = True            # workers fill a ring of shared-memory batch buffers (see _ImageRing)


# ---------------------------------------------------------------------------------------------
# Planning an epoch
# ---------------------------------------------------------------------------------------------

@dataclass
class WorkerPlan:
    shards: list[str]
    batches: int
    pad_from: list[str]                   # where padding samples come from (its shards, or others)


def _deal(items: list[str], weight: dict[str, float], n: int) -> list[list[str]]:
    """Greedy balance: each item, in the given (per-epoch shuffled) order, to the bin with the
    least load so far; loads then differ by at most one item's weight."""
    bins: list[list[str]] = [[] for _ in range(n)]
    load = [0.0] * n
    for it in items:
        b = min(range(n), key=lambda i: (load[i], i))
        bins[b].append(it)
        load[b] += weight[it]
    return bins


def plan_epoch(expected: dict[str, float], epoch: int, seed: int, world_size: int, workers: int,
               batch_images: int, consumed: set[str] | frozenset = frozenset(),
               shuffle: bool = True) -> list[list[WorkerPlan]]:
    """Per rank, per worker: shards and batch quota. Same result on every rank."""
    names = sorted(expected)
    if len(names) < world_size:
        raise ValueError(f"{len(names)} shards for {world_size} ranks: write smaller shards "
                         "(--max-size/--max-count) so that every rank has at least one")
    if shuffle:
        random.Random(seed * 1_000_003 + epoch).shuffle(names)
    remaining = [n for n in names if n not in consumed]
    workers = max(1, workers)
    plans = []
    per_rank = _deal(remaining, expected, world_size)
    for rank_shards in per_rank:
        per_worker = _deal(rank_shards, expected, workers)
        need = [math.ceil(sum(expected[s] for s in ws) / batch_images) for ws in per_worker]
        plans.append([WorkerPlan(ws, b, ws) for ws, b in zip(per_worker, need)])
    if not remaining:
        return plans
    n_batches = max(sum(w.batches for w in rank) for rank in plans)
    for r, rank in enumerate(plans):
        extra = n_batches - sum(w.batches for w in rank)
        with_shards = [w for w in rank if w.shards] or rank
        for i in range(extra):
            w = with_shards[i % len(with_shards)]
            w.batches += 1
            if not w.pad_from:  # a rank with no shard left pads from the epoch's other shards
                w.pad_from = [remaining[(r + i) % len(remaining)]]
    return plans


# ---------------------------------------------------------------------------------------------
# Reading shards
# ---------------------------------------------------------------------------------------------

class BadSamples:
    """Counts corrupt samples and logs them at a bounded rate."""

    def __init__(self, every_s: float):
        self.every_s, self.count, self.last_log, self.unlogged = every_s, 0, -1e18, 0

    def add(self, where: str, why: str) -> None:
        self.count += 1
        self.unlogged += 1
        now = time.monotonic()
        if now - self.last_log >= self.every_s:
            log.warning("skipped %d corrupt sample(s) since the last report; latest: %s: %s",
                        self.unlogged, where, why)
            self.last_log, self.unlogged = now, 0


_ZERO_BLOCK = bytes(512)


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:   # GNU base-256 for large sizes
        return int.from_bytes(field[1:], "big")
    field = field.split(b"\0", 1)[0].strip()
    return int(field, 8) if field else 0


def iter_tar(path: Path, bad: BadSamples) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of the regular files of a tar, read sequentially.

    A lean reader for the hot path (tarfile's streaming mode is ~4x slower per member): ustar,
    GNU long names and pax path records. A header with a bad checksum, or a truncated member,
    ends the shard with a count in ``bad``: the members before it are still delivered."""
    with open(path, "rb", buffering=1 << 20) as fh:
        long_name = None
        while True:
            header = fh.read(512)
            if len(header) < 512:
                if header:
                    bad.add(str(path), "tar ends inside a header (truncated)")
                return
            if header == _ZERO_BLOCK:
                return
            # the checksum costs as much as the rest of the header parsing: verify it when the
            # header does not look like the ustar/GNU headers our writer produces; a corrupted
            # size field is then caught by the next header, which no longer looks like one
            try:
                if header[257:262] != b"ustar" and \
                        _octal(header[148:156]) != sum(header[:148]) + 256 + sum(header[156:]):
                    raise ValueError("checksum mismatch")
                size = _octal(header[124:136])
            except ValueError as exc:
                bad.add(str(path), f"bad tar header at byte {fh.tell() - 512} ({exc}); rest of shard skipped")
                return
            data = fh.read(size)
            if len(data) < size:
                bad.add(str(path), "tar ends inside a member (truncated)")
                return
            if size % 512:
                fh.seek(512 - size % 512, 1)
            kind = header[156:157]
            if kind == b"L":
                long_name = data.rstrip(b"\0").decode("utf-8", "replace")
                continue
            if kind in (b"x", b"g"):
                for rec in data.decode("utf-8", "replace").split("\n"):
                    _, _, kv = rec.partition(" ")
                    if kind == b"x" and kv.startswith("path="):
                        long_name = kv[5:]
                continue
            if kind not in (b"0", b"\0", b"7"):
                long_name = None
                continue
            if long_name is not None:
                name, long_name = long_name, None
            else:
                name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
                if header[257:262] == b"ustar" and header[345]:
                    name = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace") + "/" + name
            yield name, data


def read_shard(path: Path, bad: BadSamples) -> Iterator[dict]:
    """Complete samples (jpg + json) of one tar, in order; incomplete or unreadable samples and
    damaged tar ends are skipped and counted."""
    current: dict = {}

    def finish(sample: dict):
        if schema.IMAGE_EXT in sample and schema.LABELS_EXT in sample:
            try:
                sample["labels"] = _json_loads(sample[schema.LABELS_EXT])
                return sample
            except ValueError as exc:
                bad.add(f"{path}:{sample['__key__']}", f"bad labels: {exc}")
        elif sample:
            bad.add(f"{path}:{sample.get('__key__')}", f"incomplete sample (has {sorted(sample)})")
        return None

    try:
        for fname, data in iter_tar(path, bad):
            base = fname.rsplit("/", 1)[-1]
            key, _, ext = base.partition(".")
            key = fname[: len(fname) - len(base)] + key
            if current and key != current["__key__"]:
                done = finish(current)
                if done is not None:
                    yield done
                current = {}
            current["__key__"] = key
            current[ext] = data
    except OSError as exc:
        bad.add(str(path), f"cannot read: {exc}")
        return
    if current:
        done = finish(current)
        if done is not None:
            yield done


def sample_stream(split_dir: Path, plan: WorkerPlan, quota: int, repeat: dict[str, np.ndarray] | None,
                  buffer_size: int, rng: np.random.Generator, bad: BadSamples) -> Iterator[tuple[dict, bool, list[str]]]:
    """Exactly ``quota`` samples as (sample, is_padding, shards whose every sample has now been
    delivered). The first pass reads the worker's shards; if they run short of the quota, padding
    passes read them (or ``pad_from``) again."""
    if quota <= 0:
        return
    buf: list[tuple[dict, bool, str]] = []
    pending: dict[str, int] = {}
    closed: set[str] = set()
    done: list[str] = []
    out = 0

    def emit():
        nonlocal out, done
        i = int(rng.integers(len(buf)))
        sample, pad, shard = buf[i]
        buf[i] = buf[-1]
        buf.pop()
        out += 1
        if not pad:
            pending[shard] -= 1
            if pending[shard] == 0 and shard in closed:
                done.append(shard)
        finished, done = done, []
        return sample, pad, finished

    passes = 0
    while out < quota:
        padding = passes > 0
        sources = plan.pad_from if padding else plan.shards
        got_any = False
        for shard in sources:
            factors = repeat.get(shard) if repeat is not None else None
            if not padding:
                pending[shard] = 0
            for pos, sample in enumerate(read_shard(split_dir / shard, bad)):
                got_any = True
                n = 1 if factors is None else copies(float(factors[min(pos, len(factors) - 1)]), rng)
                for _ in range(n):
                    if not padding:
                        pending[shard] += 1
                    buf.append((sample, padding, shard))
                    if len(buf) >= buffer_size:
                        yield emit()
                        if out >= quota:
                            return
            if not padding:
                closed.add(shard)
                if pending[shard] == 0:   # nothing of it was drawn (or all bad): delivered already
                    done.append(shard)
        if not got_any and not buf:
            raise RuntimeError(f"no readable sample in {sources} ({split_dir}): cannot fill the epoch")
        while buf and out < quota:   # drain the buffer before a padding pass
            yield emit()
        passes += 1


# ---------------------------------------------------------------------------------------------
# Decode and augment (CPU side)
# ---------------------------------------------------------------------------------------------

def rrc_box(width: int, height: int, scale, ratio, rng: random.Random) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (left, top, w, h), torchvision's algorithm with our RNG."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def centre_box(width: int, height: int, crop_pct: float) -> tuple[int, int, int, int]:
    """Eval: the centre square that a resize of the shorter side to size/crop_pct then a centre
    crop of size would keep, in original pixels."""
    side = min(width, height) * crop_pct
    return int(round((width - side) / 2)), int(round((height - side) / 2)), int(round(side)), int(round(side))


class CpuAugment:
    """JPEG bytes -> n uint8 H x W x 3 crops written into an array: crop box (random-resized or
    centre), resize, flip."""

    def __init__(self, cfg: LoaderConfig, rng: random.Random):
        self.cfg, self.rng = cfg, rng

    def box(self, width: int, height: int):
        if self.cfg.train:
            return rrc_box(width, height, self.cfg.scale, self.cfg.ratio, self.rng)
        return centre_box(width, height, self.cfg.crop_pct)

    def flip(self) -> bool:
        return self.cfg.train and self.rng.random() < self.cfg.hflip

    def into(self, data: bytes, out: np.ndarray) -> None:
        """Decode one JPEG and write ``len(out)`` augmented crops into ``out`` (n x H x W x 3, e.g.
        rows of a batch buffer: each crop goes there while it is still in the CPU's cache)."""
        s = self.cfg.image_size
        if self.cfg.decode == "torchvision":
            from torchvision.io import ImageReadMode, decode_jpeg
            from torchvision.transforms.v2 import functional as F
            img = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
            for i in range(len(out)):
                left, top, w, h = self.box(img.shape[2], img.shape[1])
                t = F.resized_crop(img, top, left, h, w, [s, s], antialias=True)
                out[i] = (t.flip(-1) if self.flip() else t).permute(1, 2, 0).numpy()
            return
        from PIL import Image
        img = Image.open(io.BytesIO(data))
        full = img.size
        # libjpeg DCT scaling: decode big images at a reduced size that still leaves >= 2x the
        # output resolution for the crop
        img.draft("RGB", (2 * s, 2 * s))
        img = img.convert("RGB")
        fx, fy = img.size[0] / full[0], img.size[1] / full[1]
        for i in range(len(out)):
            left, top, w, h = self.box(*full)
            box = (left * fx, top * fy, (left + w) * fx, (top + h) * fy)
            crop = img.resize((s, s), Image.Resampling.BILINEAR, box=box, reducing_gap=None)
            if self.flip():
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            out[i] = np.asarray(crop)


def jpeg_size(data: bytes) -> tuple[int, int]:
    from PIL import Image
    return Image.open(io.BytesIO(data)).size


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------

def _packed(lists: list, dtype) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in lists], out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(lists), dtype=dtype, count=int(offsets[-1]))
    return flat, offsets


def collate(items: list[tuple[dict, bool]], images) -> dict:
    """A batch's labels (``items``: each image's label record and padding flag) as numpy arrays:
    the worker's side, where small arrays travel pickled through the result pipe while every
    tensor would cost a shared-memory segment and a file-descriptor handshake per batch
    (:func:`as_tensors` makes them tensors in the main process). Sparse labels are packed as
    (flat values, offsets): image i's keyword ids are
    ``keyword_ids[keyword_offsets[i]:keyword_offsets[i + 1]]``; likewise label_ids/label_weights
    with label_offsets. ``instance`` is shared by the repeat_aug copies of one image."""
    labels = [it for it, _ in items]
    kw, kw_off = _packed([it["keyword_ids"] for it in labels], np.int32)
    lid, l_off = _packed([it["label_ids"] for it in labels], np.int32)
    lw, _ = _packed([it["label_weights"] for it in labels], np.float32)
    return {
        "image": images,
        "class_id": np.fromiter((it["class_id"] for it in labels), dtype=np.int64, count=len(items)),
        "instance": np.fromiter((it["index"] for it in labels), dtype=np.int64, count=len(items)),
        "padding": np.fromiter((pad for _, pad in items), dtype=np.bool_, count=len(items)),
        "keyword_ids": kw, "keyword_offsets": kw_off,
        "label_ids": lid, "label_weights": lw, "label_offsets": l_off,
    }


def as_tensors(batch: dict) -> dict:
    """The main process's side of :func:`collate`: numpy arrays become tensors (no copy)."""
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}


class _ImageRing:
    """Batch image buffers that the workers fill and the main process copies out of, reused batch
    after batch instead of a fresh shared-memory buffer per batch (whose first touch costs a page
    fault per 4 KB, ~40 per 224 px image, 10-15% of the decode).

    The main process allocates them before the workers fork, so a batch crosses the process
    boundary as two integers (:class:`_RingSlot`) instead of a shared-memory handle. Each worker
    owns ``slots`` buffers, used in turn, and a counting semaphore of its free ones: the worker
    takes one before it writes a batch, the main process gives it back once the batch is copied out
    (by the pin-memory thread into pinned memory, else by :class:`ShardLoader` into memory of the
    batch's own). Both sides go through a worker's batches in the same order, so a buffer is never
    overwritten before it was copied out, however far ahead the DataLoader lets a worker run."""

    _live: dict[int, "_ImageRing"] = {}
    _next_id = 0

    def __init__(self, workers: int, slots: int, shape: tuple):
        self.shape, self.slots = tuple(shape), slots
        self.buffers = [[torch.empty(self.shape, dtype=torch.uint8).share_memory_() for _ in range(slots)]
                        for _ in range(workers)]
        self.free: list = []
        self.id = _ImageRing._next_id
        _ImageRing._next_id += 1

    def start(self) -> None:
        """Fresh semaphores (all slots free), created before a stream's workers fork."""
        import multiprocessing
        ctx = multiprocessing.get_context("fork")
        self.free = [ctx.Semaphore(self.slots) for _ in self.buffers]
        _ImageRing._live[self.id] = self

    def stop(self) -> None:
        """Unblock workers waiting for a slot (a consumer that stopped mid-epoch) so they exit."""
        for sem in self.free:
            for _ in range(self.slots):
                sem.release()
        _ImageRing._live.pop(self.id, None)

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


class _RingSlot:
    """What a worker sends for a batch's images: which ring, worker and buffer hold them. The
    pin-memory thread calls :meth:`pin_memory`; without it, :class:`ShardLoader` calls
    :meth:`materialize`."""

    __slots__ = ("ring", "worker", "slot")

    def __init__(self, ring: int, worker: int, slot: int):
        self.ring, self.worker, self.slot = ring, worker, slot

    def __getstate__(self):
        return (self.ring, self.worker, self.slot)

    def __setstate__(self, state):
        self.ring, self.worker, self.slot = state

    def materialize(self, pin: bool = False) -> torch.Tensor:
        return _ImageRing._live[self.ring].copy_out(self.worker, self.slot, pin)

    def pin_memory(self, device=None) -> torch.Tensor:
        return self.materialize(pin=True)


def _as_is(batch):
    """collate_fn: the worker's batch goes through unchanged (not numpy -> tensor in the worker)."""
    return batch


@dataclass
class EpochPlanner:
    """What :func:`plan_epoch` needs besides the epoch: the same on every rank and in every worker,
    so a worker can plan the epochs after the first by itself."""
    expected: dict[str, float]
    seed: int
    world_size: int
    workers: int
    batch_images: int
    shuffle: bool

    def __call__(self, epoch: int, consumed: set[str] | frozenset = frozenset()) -> list[list[WorkerPlan]]:
        return plan_epoch(self.expected, epoch, self.seed, self.world_size, self.workers,
                          self.batch_images, consumed, shuffle=self.shuffle)


class _StreamDataset(IterableDataset):
    """One worker's batches: epoch ``epoch`` (its ``plans``, shards already consumed left out), then,
    with ``planner``, the epochs after it, each planned in the worker itself. Every batch carries
    its epoch."""

    def __init__(self, split_dir: Path, cfg: LoaderConfig, plans: list[WorkerPlan], repeat, epoch: int,
                 rank: int, ring: _ImageRing | None = None, planner: EpochPlanner | None = None):
        self.split_dir, self.cfg, self.plans, self.repeat = split_dir, cfg, plans, repeat
        self.epoch, self.rank, self.ring, self.planner = epoch, rank, ring, planner

    def __iter__(self):
        info = get_worker_info()
        wid = info.id if info is not None else 0
        if info is None and len(self.plans) > 1:
            raise RuntimeError("the loader plans one stream per worker: use workers >= 1")
        self._wid, self._count, self._parent = wid, 0, os.getppid()
        epoch, plans = self.epoch, self.plans
        while True:
            yield from self._epoch(epoch, plans)
            if self.planner is None:
                return
            epoch += 1
            plans = self.planner(epoch)[self.rank]

    def _epoch(self, epoch: int, plans: list[WorkerPlan]):
        """This worker's batches of one epoch: exactly its quota (samples whose JPEG cannot be
        decoded are made up by padding copies of the epoch's first good image), then one empty
        marker for each batch that the rank's busiest worker has more. Every worker so hands the
        DataLoader's round-robin the same number of items per epoch, and epochs never interleave."""
        plan = plans[self._wid]
        cfg = self.cfg
        m = max(1, cfg.repeat_aug)
        per_batch = cfg.batch_size // m
        seed = [cfg.seed, epoch, self.rank, self._wid]
        rng = np.random.default_rng(seed)
        aug = CpuAugment(cfg, random.Random(str(seed)))
        bad = BadSamples(cfg.log_bad_every_s)
        self._bad_reported, self._epoch_no = 0, epoch
        stream = sample_stream(self.split_dir, plan, plan.batches * per_batch, self.repeat,
                               cfg.shuffle_buffer if cfg.train else 1, rng, bad)
        gpu = cfg.decode == "gpu"
        items, jpegs, done, nhwc = [], [], [], None
        filler, emitted = None, 0
        for sample, padding, finished in stream:
            done.extend(finished)
            data = sample[schema.IMAGE_EXT]
            try:
                if gpu:
                    w, h = jpeg_size(data)
                    jpegs.append((data, [(aug.box(w, h), aug.flip()) for _ in range(m)]))
                else:
                    if nhwc is None:
                        nhwc, images = self._images()
                    aug.into(data, nhwc[len(items):len(items) + m])
            except Exception as exc:  # noqa: BLE001 - a corrupt JPEG must not stop training
                bad.add(f"{sample['__key__']}", f"cannot decode: {exc}")
                continue
            items.extend([(sample["labels"], padding)] * m)
            if filler is None:
                filler = (jpegs[-1] if gpu else nhwc[len(items) - m:len(items)].copy(), items[-m:])
            if len(items) == cfg.batch_size:
                yield self._batch(items, jpegs if gpu else images, done, bad)
                items, jpegs, done, nhwc = [], [], [], None
                emitted += 1
        while emitted < plan.batches:   # undecodable JPEGs left the quota short: padding copies
            if filler is None:
                raise RuntimeError(f"no decodable image in shards {plan.shards} of {self.split_dir}: "
                                   "cannot fill the epoch")
            if not gpu and nhwc is None:
                nhwc, images = self._images()
            while len(items) < cfg.batch_size:
                if gpu:
                    jpegs.append(filler[0])
                else:
                    nhwc[len(items):len(items) + m] = filler[0]
                items.extend((labels, True) for labels, _ in filler[1])
            yield self._batch(items, jpegs if gpu else images, done, bad)
            items, jpegs, done, nhwc = [], [], [], None
            emitted += 1
        for _ in range(max(w.batches for w in plans) - plan.batches):
            yield {"epoch": epoch, "marker": True}

    def _images(self) -> tuple[np.ndarray, object]:
        """A batch's image buffer, N x H x W x C (numpy view, filled in place) and what the batch
        carries for it: the B x 3 x H x W view, channels_last as the model wants it, or the
        :class:`_RingSlot` of a ring buffer."""
        s = self.cfg.image_size
        shape = (self.cfg.batch_size, s, s, 3)
        if get_worker_info() is None:
            nhwc = torch.empty(shape, dtype=torch.uint8)
            images = nhwc.permute(0, 3, 1, 2)
        elif self.ring is not None:
            nhwc = self.ring.take(self._wid, self._count, self._parent)
            images = _RingSlot(self.ring.id, self._wid, self._count % self.ring.slots)
        else:   # reuse_buffers off: a fresh shared-memory buffer per batch
            nhwc = torch.empty(shape, dtype=torch.uint8).share_memory_()
            images = nhwc.permute(0, 3, 1, 2)
        self._count += 1
        return nhwc.numpy(), images

    def _batch(self, items, images, done, bad):
        if self.cfg.decode == "gpu":
            # all JPEGs in one tensor (one shared-memory transfer, not one per image) + offsets
            sizes = [len(d) for d, _ in images]
            offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
            np.cumsum(sizes, out=offsets[1:])
            data = torch.empty(int(offsets[-1]), dtype=torch.uint8)
            view, pos = data.numpy(), 0
            for (d, _), n in zip(images, sizes):
                view[pos:pos + n] = np.frombuffer(d, dtype=np.uint8)
                pos += n
            boxes = np.array([[*box] for _, crops in images for box, _ in crops], dtype=np.float32)
            flips = np.array([f for _, crops in images for _, f in crops], dtype=np.bool_)
            batch = collate(items, None)
            batch.update(jpeg_data=data, jpeg_offsets=offsets, boxes=boxes, flips=flips)
        else:
            batch = collate(items, images)
        batch["shards_done"] = list(done)
        batch["epoch"] = self._epoch_no
        batch["bad_samples"] = bad.count - self._bad_reported
        self._bad_reported = bad.count
        return batch


def gpu_decode(batch: dict, image_size: int, device) -> torch.Tensor:
    """decode="gpu": nvJPEG-decode the batch's JPEGs (``jpeg_data``, one uint8 tensor on the CPU, cut
    at ``jpeg_offsets``) on ``device`` and cut every crop box with one
    batched roi_align (images padded to a common size), then flip. Returns uint8 B x 3 x S x S."""
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.ops import roi_align

    data, offsets = batch["jpeg_data"].cpu(), batch["jpeg_offsets"].tolist()
    jpegs = [data[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    decoded = decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device)
    n_img = len(decoded)
    m = len(batch["boxes"]) // n_img
    hmax = max(d.shape[1] for d in decoded)
    wmax = max(d.shape[2] for d in decoded)
    canvas = torch.zeros((n_img, 3, hmax, wmax), dtype=torch.float32, device=device)
    for i, d in enumerate(decoded):
        canvas[i, :, : d.shape[1], : d.shape[2]] = d
    b = batch["boxes"].to(device)
    rois = torch.cat([torch.arange(n_img, device=device).repeat_interleave(m)[:, None].float(),
                      b[:, :1], b[:, 1:2], b[:, :1] + b[:, 2:3], b[:, 1:2] + b[:, 3:4]], dim=1)
    out = roi_align(canvas, rois, output_size=image_size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    flips = batch["flips"].to(device)
    out[flips] = out[flips].flip(-1)
    return out.round_().clamp_(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------------

class _WorkerNice:
    """worker_init_fn: lower the worker's scheduling priority, so that with as many busy workers
    as cores the training process (which launches the GPU work) is not the one kept waiting."""

    def __init__(self, increment: int):
        self.increment = increment

    def __call__(self, worker_id: int) -> None:
        os.nice(self.increment)


def merge_states(states: list[dict]) -> dict:
    """One resumable state from every rank's ``state_dict()`` (e.g. accelerate's gather_object)."""
    epochs = {s["epoch"] for s in states}
    if len(epochs) != 1:
        raise ValueError(f"ranks are in different epochs: {sorted(epochs)}")
    return {"epoch": epochs.pop(), "consumed": sorted({c for s in states for c in s["consumed"]})}


class ShardLoader:
    """Batches of one rank over a split's shards (``SHARDS/train``), epoch after epoch."""

    def __init__(self, split_dir: str | Path, cfg: LoaderConfig, rank: int = 0, world_size: int = 1,
                 n_keywords: int | None = None, shards: list[str] | None = None):
        """``shards``: read only these shards of the split (e.g. all but a held-out few)."""
        self.split_dir = Path(split_dir)
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
        self.repeat = self._repeat_factors(n_keywords) if cfg.train and cfg.sampling != "instance" else None
        if self.repeat is None:
            self.expected = {s: float(n) for s, n in self.sizes.items()}
        else:
            self.expected = {s: float(r.sum()) for s, r in self.repeat.items()}
        self.epoch = 0
        self.consumed: set[str] = set()
        self.last_done: list[str] = []        # shards finished by the batch just yielded
        self.bad_samples = 0
        self._ring: _ImageRing | None = None   # the workers' batch buffers, kept across epochs
        self._stream: _Stream | None = None    # workers already streaming self.epoch (see __iter__)
        self.planner = EpochPlanner(self.expected, cfg.seed, world_size, cfg.workers,
                                    cfg.batch_size // max(1, cfg.repeat_aug), shuffle=cfg.train)

    def _repeat_factors(self, n_keywords) -> dict[str, np.ndarray]:
        t = pq.read_table(self.split_dir / schema.MANIFEST_FILE,
                          columns=["shard", "position", "class_id", "keyword_ids"]).to_pydict()
        if self.cfg.sampling == "keyword":
            nk = n_keywords or (1 + max((k for ks in t["keyword_ids"] for k in ks), default=0))
            r = keyword_repeat_factors(t["keyword_ids"], nk, self.cfg.keyword_threshold)
        else:
            cls = np.asarray(t["class_id"], dtype=np.int64)
            r = class_repeat_factors(np.bincount(cls), self.cfg.sampling)[cls]
        out: dict[str, list] = {s: [0.0] * n for s, n in self.sizes.items()}
        for shard, pos, f in zip(t["shard"], t["position"], r):
            if shard in out:
                out[shard][pos] = f
        return {s: np.asarray(v) for s, v in out.items()}

    def _plans(self) -> list[list[WorkerPlan]]:
        return self.planner(self.epoch, self.consumed)

    def __len__(self) -> int:
        """Batches this rank yields in the current (remaining) epoch: the same on every rank."""
        return sum(w.batches for w in self._plans()[self.rank])

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, set()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": sorted(self.consumed)}

    def load_state_dict(self, state: dict) -> None:
        unknown = set(state["consumed"]) - set(self.sizes)
        if unknown:
            raise ValueError(f"the checkpoint's loader state names shards that {self.split_dir} lacks: "
                             f"{sorted(unknown)[:5]}")
        self.epoch, self.consumed = int(state["epoch"]), set(state["consumed"])

    def _open_stream(self, plans: list[WorkerPlan]) -> "_Stream":
        workers = max(1, self.cfg.workers)
        fork = hasattr(os, "fork")
        ring = None
        if self.cfg.reuse_buffers and fork and self.cfg.decode != "gpu":
            if self._ring is None:
                s = self.cfg.image_size
                self._ring = _ImageRing(workers, max(1, self.cfg.prefetch_factor) + 2,
                                        (self.cfg.batch_size, s, s, 3))
            ring = self._ring
            ring.start()
        # training streams on into the next epochs; evaluation reads one epoch and stops
        ds = _StreamDataset(self.split_dir, self.cfg, plans, self.repeat, self.epoch, self.rank, ring,
                            self.planner if self.cfg.train else None)
        dl = DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=self.cfg.pin_memory,
                        collate_fn=_as_is,
                        worker_init_fn=_WorkerNice(self.cfg.worker_nice) if self.cfg.worker_nice else None,
                        prefetch_factor=self.cfg.prefetch_factor, persistent_workers=False,
                        multiprocessing_context="fork" if fork else None)
        return _Stream(iter(dl), ring, self.epoch)

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
                if "marker" in batch:    # a worker with fewer batches than the busiest one
                    continue
                n -= 1
                got = batch.pop("epoch")
                if got != self.epoch:   # a bug, not bad data: the plans of main and workers differ
                    raise RuntimeError(f"loader stream out of step: a batch of epoch {got} in epoch {self.epoch}")
                if isinstance(batch.get("image"), _RingSlot):   # not pinned: copied out here
                    batch["image"] = batch["image"].materialize()
                batch = as_tensors(batch)
                self.last_done = batch.pop("shards_done")
                self.consumed.update(self.last_done)
                self.bad_samples += batch.pop("bad_samples")
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


class _Stream:
    """A DataLoader iterator whose workers are producing batches of ``epoch`` (and on)."""

    def __init__(self, batches, ring: _ImageRing | None, epoch: int):
        self.batches, self.ring, self.epoch = batches, ring, epoch

    def close(self) -> None:
        if self.ring is not None:
            self.ring.stop()
        shutdown = getattr(self.batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self.batches = None
