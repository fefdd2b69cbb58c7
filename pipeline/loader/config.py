"""The loader's config: one typed dataclass, the ``loader`` section of the training configs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from webtag.config import InvalidValue, Rule, above, at_least, between, check, each

_ORDERED = Rule(lambda v: v[0] <= v[1], "must be [low, high] with low <= high")


@dataclass
class LoaderConfig:
    batch_size: int = 256                 # images per batch and rank (with repeat_aug: copies count)
    workers: int = 8                      # DataLoader worker processes per rank
    shuffle_buffer: int = 2000            # samples
    read_ahead: int = 1024                # samples drawn from the shuffle buffer before they are decoded back to back
    read_ahead_mb: float = 128.0          # ... or fewer, once their JPEGs hold this many MiB (large photos)
    # instance: each image once; class: every class equally likely; sqrt: class probability
    # proportional to sqrt(frequency); keyword: keyword repeat-factor sampling (LVIS RFS, t below);
    # balanced: every label of balance_over equally likely to be the one an image is drawn for
    # (balanced.py), at most balanced_cap copies of one image per epoch, epoch_draws per epoch
    sampling: Literal["instance", "class", "sqrt", "keyword", "balanced"] = "instance" # instance: every image once; class / sqrt / keyword / balanced: repeat-factor sampling
    keyword_threshold: float = 0.001      # t of keyword repeat-factor sampling
    balance_over: Literal["class", "keywords"] = "class"   # the labels of balanced sampling
    balanced_cap: int = 8                 # balanced: most copies of one image in an epoch
    epoch_draws: int = 0                  # balanced: draws (samples) per epoch over all ranks; 0: images
    repeat_aug: int = 1                   # m augmented copies of each image in one batch (MultiGrain RA)
    train: bool = True                    # False: no shuffle, no sampling, centre crop
    image_size: int = 224                 # side of the square crops in pixels
    crop_pct: float = 0.875               # eval: resize the shorter side to image_size / crop_pct
    scale: list[float] = field(default_factory=lambda: [0.08, 1.0])     # RandomResizedCrop
    ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3]) # RandomResizedCrop aspect ratios
    hflip: float = 0.5                    # probability of a horizontal flip
    decode: Literal["pil", "torchvision", "gpu"] = "pil"  # gpu: workers ship JPEG bytes + crop boxes
    seed: int = 0                         # seed of the shuffle, sampling and augmentation
    log_bad_every_s: float = 30.0         # seconds between warnings about bad samples
    pin_memory: bool = False              # pinned host memory for faster copies to the GPU
    prefetch_factor: int = 4              # batches each worker prepares ahead
    worker_nice: int = 0                  # raise the workers' niceness: the training process keeps its core
    reuse_buffers: bool = True            # workers fill a ring of shared-memory batch buffers (ring.py)

    def __post_init__(self) -> None:
        check(self, batch_size=at_least(1), workers=at_least(0), shuffle_buffer=at_least(0),
              read_ahead=at_least(1), read_ahead_mb=above(0), keyword_threshold=above(0),
              repeat_aug=at_least(1), image_size=at_least(1),
              crop_pct=between(0, 1, low_open=True), scale=each(between(0, 1, low_open=True), 2),
              ratio=each(above(0), 2), hflip=between(0, 1), log_bad_every_s=at_least(0),
              prefetch_factor=at_least(1), worker_nice=at_least(0), balanced_cap=at_least(1),
              epoch_draws=at_least(0))
        check(self, scale=_ORDERED, ratio=_ORDERED)
        if self.sampling == "balanced" and self.train and self.shuffle_buffer < 2 * self.images_per_batch:
            raise InvalidValue("shuffle_buffer", self.shuffle_buffer,
                               f"must be >= 2 x images per batch ({2 * self.images_per_batch}) with balanced "
                               "sampling: the buffer keeps copies of one image a batch apart")
        if self.batch_size % self.repeat_aug:
            raise InvalidValue("batch_size", self.batch_size,
                               f"must be a multiple of repeat_aug={self.repeat_aug} (its copies share a batch)")

    @property
    def images_per_batch(self) -> int:
        """Distinct images in a batch: ``batch_size / repeat_aug``."""
        return self.batch_size // max(1, self.repeat_aug)

