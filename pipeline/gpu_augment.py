"""The augmentation steps that belong on the GPU: uint8 -> float, colour jitter, normalise.

Workers ship uint8 images (4x fewer bytes than float through the worker queues); the trainer
calls :class:`GpuAugment` on the device batch. Colour jitter follows torchvision's ColorJitter
(brightness, contrast, saturation factors drawn uniformly in [1 - j, 1 + j] per image, applied in
that order), vectorised over the batch.
"""
from __future__ import annotations

import torch
from torch import nn

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
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x
