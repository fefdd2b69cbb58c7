"""The one evaluation loop: models over ordered, centre-crop shard loaders, the padding left out.

It serves the held-out evaluation of pretraining (loss, precision@k), finetuning's periodic val
evaluation, and ``finetune evaluate | predict | ensemble | pseudo-label`` (one model or an
ensemble: each model reads the shards with its own loader, at its own image size and crop; the
eval loaders' order does not depend on those, so the models' batches line up, checked on the
image ids). What is computed from the outputs is the caller's.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Sequence

import torch
from torch import nn

from pipeline.loader import GpuAugment, LoaderConfig, ShardLoader
from pipeline.schema import read_sizes


def eval_loader(split_dir: str | Path, cfg: LoaderConfig, rank: int = 0, world_size: int = 1,
                shards: list[str] | None = None) -> tuple[ShardLoader | None, bool]:
    """An ordered, centre-crop loader over ``shards`` of ``split_dir`` (default: all) for this rank,
    and whether the ranks share the work (enough shards for every rank); otherwise rank 0
    evaluates alone and the others get None."""
    names = shards if shards is not None else list(read_sizes(split_dir))
    shared = len(names) >= world_size
    if not shared and rank != 0:
        return None, False
    world = world_size if shared else 1
    ecfg = replace(cfg, train=False, sampling="instance", repeat_aug=1,
                   workers=min(cfg.workers, max(1, len(names) // world)))
    return ShardLoader(split_dir, ecfg, rank=rank if shared else 0, world_size=world, shards=names), shared


def default_autocast(device: torch.device) -> ContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


@torch.no_grad()
def model_outputs(models: Sequence[nn.Module], loaders: Sequence[ShardLoader], device,
                  autocast: Callable[[], ContextManager] | None = None, max_batches: int = 0,
                  normalise: nn.Module | None = None) -> Iterator[tuple[list[torch.Tensor], dict, torch.Tensor]]:
    """Per batch: each model's float logits for the real images (on ``device``), the batch of the
    first loader (label fields on the CPU, all rows), and the mask of its real images.

    ``models[i]`` reads ``loaders[i]``; the models are put in eval mode and restored after.
    ``max_batches``: stop after that many batches (0: the whole split)."""
    device = torch.device(device)
    norm = (normalise or GpuAugment(jitter=0.0)).to(device)
    autocast = autocast or (lambda: default_autocast(device))
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        for i, batches in enumerate(zip(*loaders)):
            if max_batches and i >= max_batches:
                break
            first = batches[0]
            keep = ~first["meta"].padding
            on_device = keep.to(device)
            outputs = []
            for model, loader, batch in zip(models, loaders, batches):
                if not torch.equal(batch["index"], first["index"]):
                    raise RuntimeError("the evaluation loaders went out of step")
                images = loader.path.device_images(batch, device, loader.cfg.image_size)
                with autocast():
                    logits = model(norm(images, train=False))
                outputs.append(logits.float()[on_device])
            yield outputs, first, keep
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
        for loader in loaders:
            loader.close()
