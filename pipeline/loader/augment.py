"""The CPU side of augmentation, in the workers: crop box (RandomResizedCrop in training, centre
crop in evaluation), decode, resize, horizontal flip, written into a batch buffer.

Colour jitter and normalisation run on the device (:mod:`.device`): workers ship uint8.
"""
from __future__ import annotations

import io
import math
import random

import numpy as np
import torch

from .config import LoaderConfig


def rrc_box(width: int, height: int, scale, ratio, rng: random.Random) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (left, top, w, h): torchvision's algorithm (10 tries of a random
    area and log-uniform aspect, then the centre crop clamped to the ratio range).

    Why not torchvision's or timm's ``RandomResizedCrop.get_params``: those draw from the global
    torch / ``random`` state and need the image; this one draws from the worker's own
    ``random.Random`` (seeded by seed, epoch, rank and worker, so a worker that streams on into the
    next epoch produces the same crops as a fresh one) and needs only the size, which the GPU
    path reads from the JPEG header and the PIL path takes before its reduced-size DCT decode."""
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


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG header, without decoding."""
    from PIL import Image
    return Image.open(io.BytesIO(data)).size


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
