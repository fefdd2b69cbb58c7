"""The bottom layer of the model code: timm models by name, and the two things every head option
needs, where the last linear layer is (:func:`head_prefix`) and how to swap a submodule
(:func:`replace_module`). It imports nothing of the method options (:mod:`.options`, :mod:`.srn`),
which build on it; :mod:`.model` assembles them.
"""
from __future__ import annotations

import timm
import torch
from torch import nn

from .config import ModelConfig


def build_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    try:
        return timm.create_model(cfg.name, pretrained=cfg.pretrained, num_classes=num_classes,
                                 drop_rate=cfg.drop_rate, drop_path_rate=cfg.drop_path_rate)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            close = timm.list_models(f"*{cfg.name.split('_')[0]}*")[:10]
            raise ValueError(f"model.name={cfg.name!r} is not a timm model; similar names: {close}") from None
        raise


def head_prefix(model: nn.Module) -> str:
    """The state-dict prefix of the last linear layer, e.g. ``fc`` (ResNet), ``classifier``
    (EfficientNet), ``head.fc`` (some newer models)."""
    name = model.pretrained_cfg.get("classifier") if hasattr(model, "pretrained_cfg") else None
    if isinstance(name, (list, tuple)):
        name = name[0]
    if not name:
        raise ValueError(f"{type(model).__name__}: timm names no classifier layer")
    return name


def replace_module(model: nn.Module, dotted: str, new: nn.Module) -> nn.Module:
    """Put ``new`` where the submodule ``dotted`` (e.g. ``head.fc``) is; returns the old one."""
    parent, _, attr = dotted.rpartition(".")
    owner = model.get_submodule(parent)
    old = getattr(owner, attr)
    setattr(owner, attr, new)
    return old


def backbone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    prefix = head_prefix(model) + "."
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith(prefix)}
