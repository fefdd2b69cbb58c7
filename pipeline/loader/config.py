"""The loader's config: one typed dataclass, the ``loader`` section of the training configs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


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
    reuse_buffers: bool = True            # workers fill a ring of shared-memory batch buffers (ring.py)

    @property
    def images_per_batch(self) -> int:
        """Distinct images in a batch: ``batch_size / repeat_aug``."""
        return self.batch_size // max(1, self.repeat_aug)
