"""The two batch paths, one interface: how a batch's images are made in the worker and what the
device does with what the batch carries.

- :class:`CpuBatches` (``decode=pil|torchvision``): the worker decodes and augments every crop
  straight into the batch's image buffer (a ring slot, :mod:`.ring`); the batch carries
  ``image``, uint8 B x 3 x S x S (channels_last), which the device side copies to the device.
- :class:`GpuBatches` (``decode=gpu``): the worker reads only the JPEG header and draws the crop
  boxes and flips; the batch carries the JPEG bytes (all in one tensor, cut at
  ``jpeg_offsets``), ``boxes`` and ``flips``, and the device side decodes them there
  (:func:`.device.gpu_decode`). ``image`` is None.

Worker side, per batch: :meth:`add` (one sample's m crops; raises on an undecodable JPEG),
:meth:`filler` / :meth:`put_filler` (padding copies of a good sample when JPEGs failed),
:meth:`fields` (what the batch dict carries for the images). Device side:
:meth:`device_images`. :func:`batch_path` picks one by ``decode``; nothing else branches on it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .augment import CpuAugment, jpeg_size
from .config import LoaderConfig

JPEG_FIELDS = ("jpeg_data", "jpeg_offsets")   # stay on the CPU: nvJPEG reads its input from there


class CpuBatches:
    uses_ring = True                 # the workers write into the main process's image ring

    def __init__(self, cfg: LoaderConfig, buffer: Callable[[], tuple[np.ndarray, object]]):
        """``buffer()``: a new batch's N x H x W x C array to fill and what the batch carries for it."""
        self.buffer = buffer
        self.nhwc: np.ndarray | None = None
        self.images = None

    def add(self, row: int, data: bytes, aug: CpuAugment, m: int) -> None:
        if self.nhwc is None:
            self.nhwc, self.images = self.buffer()
        aug.into(data, self.nhwc[row:row + m])

    def filler(self, row: int, m: int):
        return self.nhwc[row:row + m].copy()

    def put_filler(self, row: int, filler) -> None:
        if self.nhwc is None:
            self.nhwc, self.images = self.buffer()
        self.nhwc[row:row + len(filler)] = filler

    def fields(self) -> dict:
        out = {"image": self.images}
        self.nhwc = self.images = None
        return out

    @staticmethod
    def device_images(batch: dict, device, image_size: int) -> torch.Tensor:
        return batch["image"].to(device, non_blocking=True)


class GpuBatches:
    uses_ring = False

    def __init__(self, cfg: LoaderConfig, buffer=None):
        self.jpegs: list[tuple[bytes, list]] = []

    def add(self, row: int, data: bytes, aug: CpuAugment, m: int) -> None:
        w, h = jpeg_size(data)
        self.jpegs.append((data, [(aug.box(w, h), aug.flip()) for _ in range(m)]))

    def filler(self, row: int, m: int):
        return self.jpegs[-1]

    def put_filler(self, row: int, filler) -> None:
        self.jpegs.append(filler)

    def fields(self) -> dict:
        """All JPEGs in one tensor (one shared-memory transfer, not one per image) + offsets."""
        images, self.jpegs = self.jpegs, []
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
        return {"image": None, "jpeg_data": data, "jpeg_offsets": offsets, "boxes": boxes, "flips": flips}

    @staticmethod
    def device_images(batch: dict, device, image_size: int) -> torch.Tensor:
        """nvJPEG decode on ``device``; a batch decoded already (``image`` set) passes through."""
        if batch.get("image") is not None:
            return batch["image"]
        from .device import gpu_decode
        return gpu_decode(batch, image_size, device)


def batch_path(cfg: LoaderConfig) -> type[CpuBatches] | type[GpuBatches]:
    return GpuBatches if cfg.decode == "gpu" else CpuBatches
