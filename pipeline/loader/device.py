"""The loader's device side: batches to the device one step ahead (:class:`DevicePrefetcher`),
nvJPEG decode of the GPU batch path (:func:`gpu_decode`), and the augmentation steps that belong
on the device (:class:`GpuAugment`: uint8 -> float, colour jitter, normalise).

Workers ship uint8 images (4x fewer bytes than float through the worker queues). Colour jitter
follows torchvision's ColorJitter (brightness, contrast, saturation factors drawn uniformly in
[1 - j, 1 + j] per image, applied in that order), vectorised over the batch.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from .collate import BatchMeta
from .paths import JPEG_FIELDS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


class GpuAugment(nn.Module):
    def __init__(self, jitter: float = 0.4, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 channels_last: bool = True):
        super().__init__()
        self.jitter = jitter
        self.channels_last = channels_last
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, train: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        x = images.float().div_(255.0)
        if train and self.jitter > 0:
            n = x.shape[0]

            def factor():
                return (1.0 + (torch.rand(n, 1, 1, 1, device=x.device, generator=generator) * 2 - 1)
                        * self.jitter)

            x = (x * factor()).clamp_(0, 1)                                   # brightness
            mean = _gray(x).mean(dim=(2, 3), keepdim=True)
            x = ((x - mean) * factor() + mean).clamp_(0, 1)                   # contrast
            gray = _gray(x)
            x = ((x - gray) * factor() + gray).clamp_(0, 1)                   # saturation
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)


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


class DevicePrefetcher:
    """Iterates a loader's batches with their tensors on ``device`` (the JPEG bytes of the GPU path
    stay on the CPU). On CUDA the next batch is copied on a side stream while the current one is
    used, so the copy is off the compute stream's critical path; on the CPU one batch at a time.

    ``check(batch)`` runs on each batch while it is still on the CPU (e.g. label ids in range,
    without a device sync). :attr:`in_flight` is the metadata of the batches taken from the
    loader but not yet handed out (at most one): a checkpoint's loader position leaves their
    shards out (``ShardLoader.state_dict(in_flight=...)``). :attr:`waited` counts the seconds
    spent blocked on the loader."""

    def __init__(self, batches: Iterable[dict], device, check: Callable[[dict], None] | None = None):
        self.batches, self.device, self.check = batches, torch.device(device), check
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.in_flight: list[BatchMeta] = []
        self.waited = 0.0

    def take_waited(self) -> float:
        """Seconds blocked on the loader since the previous call."""
        w, self.waited = self.waited, 0.0
        return w

    def _fetch(self, it) -> dict | None:
        t0 = time.perf_counter()
        batch = next(it, None)
        self.waited += time.perf_counter() - t0
        if batch is None:
            return None
        if self.check is not None:
            self.check(batch)
        with torch.cuda.stream(self.stream) if self.cuda else contextlib.nullcontext():
            for key, value in batch.items():
                if isinstance(value, torch.Tensor) and key not in JPEG_FIELDS:
                    batch[key] = value.to(self.device, non_blocking=True)
        return batch

    def __iter__(self) -> Iterator[dict]:
        it = iter(self.batches)
        if not self.cuda:   # no copy to overlap: one batch at a time
            while (batch := self._fetch(it)) is not None:
                yield batch
            return
        nxt = self._fetch(it)
        while nxt is not None:
            current = nxt
            main = torch.cuda.current_stream(self.device)
            main.wait_stream(self.stream)
            for value in current.values():
                if isinstance(value, torch.Tensor) and value.is_cuda:
                    value.record_stream(main)   # the allocator must not reuse it early
            nxt = self._fetch(it)
            self.in_flight = [nxt["meta"]] if nxt is not None else []
            yield current
        self.in_flight = []
