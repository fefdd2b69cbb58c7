"""Models by timm name, with the head sized from the data, and the backbone-only weights file.

The backbone file (``backbone.safetensors`` + ``backbone.json``) holds every tensor of the model
except the last linear layer (timm's ``pretrained_cfg["classifier"]``): finetuning loads it and
puts a new head on top.
"""
from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
from torch import nn

from webtag.atomic import atomic_file, write_text_atomic

from .config import ModelConfig

BACKBONE_WEIGHTS = "backbone.safetensors"
BACKBONE_INFO = "backbone.json"
MODEL_WEIGHTS = "model.safetensors"      # the whole model, head included (evaluation, prediction)
MODEL_INFO = "model.json"


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


def save_backbone(model: nn.Module, folder: str | Path, model_name: str, extra: dict | None = None) -> Path:
    """Write the backbone-only weights (safetensors) and a JSON description, atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    state = backbone_state(model)
    with atomic_file(folder / BACKBONE_WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"model": model_name})
    info = {"model": model_name, "head": head_prefix(model), "num_features": getattr(model, "num_features", None),
            "tensors": len(state), **(extra or {})}
    write_text_atomic(folder / BACKBONE_INFO, json.dumps(info, indent=2) + "\n")
    return folder / BACKBONE_WEIGHTS


def save_model(model: nn.Module, folder: str | Path, info: dict) -> Path:
    """The whole model (head included) as ``model.safetensors`` + ``model.json`` (``info``: at least
    ``model`` and ``num_classes``; the eval transform's ``image_size`` and ``crop_pct``), atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_file(folder / MODEL_WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"model": str(info.get("model"))})
    write_text_atomic(folder / MODEL_INFO, json.dumps(info, indent=2) + "\n")
    return folder / MODEL_WEIGHTS


def read_model_info(path: str | Path) -> dict | None:
    """The model.json beside a whole model (``path``: its folder or its model.safetensors), or None."""
    path = Path(path)
    meta = (path if path.is_dir() else path.parent) / MODEL_INFO
    return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else None


def load_model(path: str | Path) -> tuple[nn.Module, dict]:
    """A model saved by :func:`save_model`: ``path`` is its folder or its ``model.safetensors``."""
    from safetensors.torch import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights, info = folder / MODEL_WEIGHTS, read_model_info(folder)
    if not weights.is_file() or info is None:
        raise FileNotFoundError(f"{path}: no {MODEL_WEIGHTS} with {MODEL_INFO} (a finished run folder, "
                                "its best/ folder, or a model.safetensors written by webtag)")
    if "model_config" in info:   # rebuilt as trained: pooling, ML-GCN or SRN head
        from webtag.config import from_dict

        from .config import GCNConfig, SRNConfig
        from .options import build_full_model
        mcfg = from_dict(ModelConfig, {**info["model_config"], "pretrained": False, "init_weights": ""})
        model = build_full_model(mcfg, from_dict(GCNConfig, info.get("gcn", {})), from_dict(SRNConfig, info.get("srn", {})),
                                 info.get("labels", ""), info.get("target", "class"), int(info["num_classes"]))
    else:
        model = timm.create_model(info["model"], pretrained=False, num_classes=int(info["num_classes"]))
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.eval(), info


def load_whole_model(model: nn.Module, path: str | Path) -> None:
    """Load a whole model (``model.safetensors``, or its folder) into ``model``, strictly: every
    tensor must match by name and shape (e.g. the previous stage of a staged schedule)."""
    from safetensors.torch import load_file

    path = Path(path)
    weights = path / MODEL_WEIGHTS if path.is_dir() else path
    if not weights.is_file():
        raise FileNotFoundError(f"model.init_weights={path}: no {MODEL_WEIGHTS} there")
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{weights} does not fit the configured model: {exc}") from None
