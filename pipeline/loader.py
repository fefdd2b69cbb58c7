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
"""
from __future__ import annotations

import io
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pyarrow.parquet as pq
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
    reuse_buffers: bool = True            # workers fill a ring of shared-memory batch buffers (see _batch)


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
                sample["labels"] = json.loads(sample[schema.LABELS_EXT])
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
    """JPEG bytes -> n uint8 H x W x 3 arrays: crop box (random-resized or centre), resize, flip."""

    def __init__(self, cfg: LoaderConfig, rng: random.Random):
        self.cfg, self.rng = cfg, rng

    def box(self, width: int, height: int):
        if self.cfg.train:
            return rrc_box(width, height, self.cfg.scale, self.cfg.ratio, self.rng)
        return centre_box(width, height, self.cfg.crop_pct)

    def flip(self) -> bool:
        return self.cfg.train and self.rng.random() < self.cfg.hflip

    def __call__(self, data: bytes, n: int = 1) -> list[torch.Tensor]:
        s = self.cfg.image_size
        if self.cfg.decode == "torchvision":
            from torchvision.io import ImageReadMode, decode_jpeg
            from torchvision.transforms.v2 import functional as F
            img = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
            out = []
            for _ in range(n):
                left, top, w, h = self.box(img.shape[2], img.shape[1])
                t = F.resized_crop(img, top, left, h, w, [s, s], antialias=True)
                out.append((t.flip(-1) if self.flip() else t).permute(1, 2, 0).numpy())
            return out
        from PIL import Image
        img = Image.open(io.BytesIO(data))
        full = img.size
        # libjpeg DCT scaling: decode big images at a reduced size that still leaves >= 2x the
        # output resolution for the crop
        img.draft("RGB", (2 * s, 2 * s))
        img = img.convert("RGB")
        fx, fy = img.size[0] / full[0], img.size[1] / full[1]
        out = []
        for _ in range(n):
            left, top, w, h = self.box(*full)
            box = (left * fx, top * fy, (left + w) * fx, (top + h) * fy)
            crop = img.resize((s, s), Image.Resampling.BILINEAR, box=box, reducing_gap=None)
            if self.flip():
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            out.append(np.asarray(crop))
        return out


def jpeg_size(data: bytes) -> tuple[int, int]:
    from PIL import Image
    return Image.open(io.BytesIO(data)).size


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------

def _packed(lists: list, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(x) for x in lists], dtype=torch.int64)
    offsets = torch.zeros(len(lists) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    flat = torch.tensor([v for x in lists for v in x], dtype=dtype)
    return flat, offsets


def collate(items: list[dict], images) -> dict:
    """A batch. Sparse labels are packed as (flat values, offsets): image i's keyword ids are
    ``keyword_ids[keyword_offsets[i]:keyword_offsets[i + 1]]``; likewise label_ids/label_weights
    with label_offsets. ``instance`` is shared by the repeat_aug copies of one image."""
    kw, kw_off = _packed([it["keyword_ids"] for it in items], torch.int32)
    lid, l_off = _packed([it["label_ids"] for it in items], torch.int32)
    lw, _ = _packed([it["label_weights"] for it in items], torch.float32)
    return {
        "image": images,
        "class_id": torch.tensor([it["class_id"] for it in items], dtype=torch.int64),
        "instance": torch.tensor([it["index"] for it in items], dtype=torch.int64),
        "padding": torch.tensor([it["padding"] for it in items], dtype=torch.bool),
        "keyword_ids": kw, "keyword_offsets": kw_off,
        "label_ids": lid, "label_weights": lw, "label_offsets": l_off,
    }


class _EpochDataset(IterableDataset):
    def __init__(self, split_dir: Path, cfg: LoaderConfig, plans: list[WorkerPlan], repeat, epoch: int, rank: int):
        self.split_dir, self.cfg, self.plans, self.repeat = split_dir, cfg, plans, repeat
        self.epoch, self.rank = epoch, rank
        self._ring: list[torch.Tensor] = []   # each worker's own copy: its reused batch buffers
        self._slot = 0

    def __iter__(self):
        info = get_worker_info()
        wid = info.id if info is not None else 0
        if info is None and len(self.plans) > 1:
            raise RuntimeError("the loader plans one stream per worker: use workers >= 1")
        plan = self.plans[wid]
        cfg = self.cfg
        m = max(1, cfg.repeat_aug)
        per_batch = cfg.batch_size // m
        seed = [cfg.seed, self.epoch, self.rank, wid]
        rng = np.random.default_rng(seed)
        aug = CpuAugment(cfg, random.Random(str(seed)))
        bad = BadSamples(cfg.log_bad_every_s)
        self._bad_reported = 0
        stream = sample_stream(self.split_dir, plan, plan.batches * per_batch, self.repeat,
                               cfg.shuffle_buffer if cfg.train else 1, rng, bad)
        items, images, done = [], [], []
        for sample, padding, finished in stream:
            done.extend(finished)
            labels = sample["labels"]
            data = sample[schema.IMAGE_EXT]
            try:
                if cfg.decode == "gpu":
                    w, h = jpeg_size(data)
                    crops = [(aug.box(w, h), aug.flip()) for _ in range(m)]
                    imgs = [(data, crops)]
                else:
                    imgs = aug(data, m)
            except Exception as exc:  # noqa: BLE001 - a corrupt JPEG must not stop training
                bad.add(f"{sample['__key__']}", f"cannot decode: {exc}")
                imgs = None
            if imgs is None:  # replace it by the next sample: the quota counts delivered images
                continue
            for j in range(m):
                items.append({**labels, "padding": padding})
            images.extend(imgs)
            if len(items) == cfg.batch_size:
                yield self._batch(items, images, done, bad)
                items, images, done = [], [], []
        if items:  # bad JPEGs left the last batch short: top it up with padding copies
            while len(items) < cfg.batch_size:
                items.append({**items[len(items) % m], "padding": True})
                images.append(images[len(images) % m])
            yield self._batch(items, images, done, bad)

    def _batch(self, items, images, done, bad):
        if self.cfg.decode == "gpu":
            # all JPEGs in one tensor (one shared-memory transfer, not one per image) + offsets
            sizes = [len(d) for d, _ in images]
            offsets = torch.zeros(len(sizes) + 1, dtype=torch.int64)
            offsets[1:] = torch.cumsum(torch.tensor(sizes, dtype=torch.int64), 0)
            data = torch.empty(int(offsets[-1]), dtype=torch.uint8)
            view, pos = data.numpy(), 0
            for (d, _), n in zip(images, sizes):
                view[pos:pos + n] = np.frombuffer(d, dtype=np.uint8)
                pos += n
            boxes = torch.tensor([[*box] for _, crops in images for box, _ in crops], dtype=torch.float32)
            flips = torch.tensor([f for _, crops in images for _, f in crops], dtype=torch.bool)
            batch = collate(items, None)
            batch.update(jpeg_data=data, jpeg_offsets=offsets, boxes=boxes, flips=flips)
        else:
            # one copy of each image into the batch, laid out N x H x W x C: the B x 3 x H x W view
            # handed out is channels_last, the layout the model wants
            s = self.cfg.image_size
            nhwc = self._buffer((len(images), s, s, 3))
            view = nhwc.numpy()
            for i, img in enumerate(images):
                view[i] = img
            batch = collate(items, nhwc.permute(0, 3, 1, 2))
        batch["shards_done"] = list(done)
        batch["bad_samples"] = bad.count - self._bad_reported
        self._bad_reported = bad.count
        return batch


    def _buffer(self, shape: tuple) -> torch.Tensor:
        """The batch's image buffer. In a worker it lives in shared memory (filled in place: no copy
        when sent). A fresh shared buffer per batch costs a page fault per 4 KB on first touch
        (about 0.1 ms per 224 px image, 10-15% of the decode); with ``reuse_buffers`` the worker
        cycles through ``prefetch_factor + 2`` buffers instead. That is safe because the
        DataLoader asks a worker for batch k + prefetch_factor + 1 only after the main process
        received batch k + 1, and by then batch k was copied out of its buffer: by the pin-memory
        thread, or by :class:`ShardLoader` itself when memory is not pinned."""
        if get_worker_info() is None:
            return torch.empty(shape, dtype=torch.uint8)
        if not self.cfg.reuse_buffers:
            return torch.empty(shape, dtype=torch.uint8).share_memory_()
        i = self._slot % (max(1, self.cfg.prefetch_factor) + 2)
        self._slot += 1
        if i == len(self._ring):
            self._ring.append(torch.empty(shape, dtype=torch.uint8).share_memory_())
        elif tuple(self._ring[i].shape) != tuple(shape):
            self._ring[i] = torch.empty(shape, dtype=torch.uint8).share_memory_()
        return self._ring[i]


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
        import os
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
        images = self.cfg.batch_size // max(1, self.cfg.repeat_aug)
        return plan_epoch(self.expected, self.epoch, self.cfg.seed, self.world_size, self.cfg.workers,
                          images, self.consumed, shuffle=self.cfg.train)

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

    def __iter__(self) -> Iterator[dict]:
        plans = self._plans()[self.rank]
        workers = max(1, self.cfg.workers)
        ds = _EpochDataset(self.split_dir, self.cfg, plans, self.repeat, self.epoch, self.rank)
        dl = DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=self.cfg.pin_memory,
                        worker_init_fn=_WorkerNice(self.cfg.worker_nice) if self.cfg.worker_nice else None,
                        prefetch_factor=self.cfg.prefetch_factor, persistent_workers=False,
                        multiprocessing_context="fork" if hasattr(__import__("os"), "fork") else None)
        pinned = self.cfg.pin_memory and torch.cuda.is_available()
        copy_out = self.cfg.reuse_buffers and not pinned and workers > 0
        for batch in dl:
            if copy_out and batch.get("image") is not None:
                # the worker reuses its buffer a few batches later: the batch gets its own memory
                batch["image"] = batch["image"].clone(memory_format=torch.channels_last)
            self.last_done = batch.pop("shards_done")
            self.consumed.update(self.last_done)
            self.bad_samples += batch.pop("bad_samples")
            yield batch
        # the epoch is over: the next one starts from a fresh shuffle
        self.epoch += 1
        self.consumed = set()
