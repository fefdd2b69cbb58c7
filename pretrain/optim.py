"""Optimizer, LR schedule (warmup, then cosine / step / constant) and the weight EMA (timm's).

The schedule is a function of the optimizer step (not the micro-batch) and is stepped by the
trainer only when gradients were applied: Accelerate's scheduler wrapper is not used, since it
steps once per process.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimConfig


def param_groups(model: nn.Module, weight_decay: float, no_decay_bias_norm: bool) -> list[dict]:
    if not no_decay_bias_norm:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)  # biases and norm scales are 1-D
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _head_names(model: nn.Module) -> set[str]:
    from .backbone import head_prefix
    try:
        prefix = head_prefix(model) + "."
    except (ValueError, AttributeError):   # not a timm model: everything is "head"
        return {n for n, _ in model.named_parameters()}
    return {n for n, _ in model.named_parameters() if n.startswith(prefix)}


def build_optimizer(model: nn.Module, cfg: OptimConfig, extra: list | None = None) -> torch.optim.Optimizer:
    """``extra``: parameters outside the model (the margin loss's beta, the multi-task LW-Set
    head), at the full LR; decay as the model's (none on 1-D and scalars). With
    ``cfg.backbone_lr_scale`` != 1 everything but the model's last layer (the head, e.g. ML-GCN's
    graph convolutions) gets ``lr x backbone_lr_scale`` (ML-GCN's ``lrp``)."""
    head = _head_names(model)
    named = dict(model.named_parameters())
    parts = [(nn.ParameterList([p for n, p in named.items() if n in head]), 1.0),
             (nn.ParameterList([p for n, p in named.items() if n not in head]), cfg.backbone_lr_scale)]
    if extra:
        parts.append((nn.ParameterList(list(extra)), 1.0))
    groups = []
    for module, scale in parts:
        for g in param_groups(module, cfg.weight_decay, cfg.no_decay_bias_norm):
            if g["params"]:
                groups.append({**g, "lr": cfg.lr * scale})
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, cfg: OptimConfig) -> float:
    """LR / cfg.lr at optimizer step ``step`` (0-based)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        start = cfg.warmup_lr / cfg.lr if cfg.lr else 0.0
        return start + (1.0 - start) * step / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        epoch = step // max(1, steps_per_epoch)
        return cfg.step_gamma ** (epoch // max(1, cfg.step_every))
    span = max(1, total_steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr / cfg.lr if cfg.lr else 0.0
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer, cfg: OptimConfig, total_steps: int, steps_per_epoch: int):
    off = cfg.schedule_offset
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s + off, total_steps + off, steps_per_epoch, cfg))


def build_ema(model: nn.Module, decay: float) -> nn.Module:
    """The EMA of the weights, timm's ``ModelEmaV3``: ``theta_ema <- d * theta_ema + (1 - d) * theta``
    after every optimizer step, for every floating-point tensor of the state (BatchNorm running
    statistics included; integer buffers are copied), with a constant decay (no warmup)."""
    from timm.utils import ModelEmaV3
    return ModelEmaV3(model, decay=decay)
