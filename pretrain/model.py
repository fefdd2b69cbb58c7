"""The model factory and its files: the timm model with the configured pooling and head (linear,
ML-GCN or SRN) sized from the data, the backbone-only weights file and the whole model.

The backbone file (``backbone.safetensors`` + ``backbone.json``) holds every tensor of the model
except the last linear layer (timm's ``pretrained_cfg["classifier"]``): finetuning loads it and
puts a new head on top.
"""
from __future__ import annotations

import json
from pathlib import Path

import timm
from torch import nn

from webtag.atomic import atomic_file, write_text_atomic
from webtag.remote_copy import local_model
from webtag.model_folder import portable_info, resolve_info, safetensors_metadata, write_timm_config

from .backbone import backbone_state, build_model, head_prefix
from .config import ModelConfig
from .options import set_gcn_head, set_pooling
from .srn import attach_srn

BACKBONE_WEIGHTS = "backbone.safetensors"
BACKBONE_INFO = "backbone.json"
MODEL_WEIGHTS = "model.safetensors"      # the whole model, head included (evaluation, prediction)
MODEL_INFO = "model.json"


def build_full_model(cfg: ModelConfig, labels_dir: str | Path, target: str, num_outputs: int) -> nn.Module:
    """The timm model with the configured pooling and head (linear, ML-GCN or SRN): the trainer
    builds it this way, and so does :func:`load_model` from a saved model.json."""
    model = build_model(cfg, num_outputs)
    set_pooling(model, cfg)
    if cfg.head == "gcn":
        set_gcn_head(model, labels_dir, target, cfg.gcn, num_outputs)
    elif cfg.head == "srn":
        attach_srn(model, head_prefix(model), cfg.srn.feature_layer, num_outputs, cfg.srn.grid, cfg.srn.stage)
    return model


def save_backbone(model: nn.Module, folder: str | Path, model_name: str, extra: dict | None = None) -> Path:
    """Write the backbone-only weights (safetensors) and a JSON description, atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    state = backbone_state(model)
    info = portable_info({"model": model_name, "head": head_prefix(model),
                          "num_features": getattr(model, "num_features", None), "tensors": len(state),
                          **(extra or {})}, folder)
    with atomic_file(folder / BACKBONE_WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata=safetensors_metadata(info))
    write_text_atomic(folder / BACKBONE_INFO, json.dumps(info, indent=2) + "\n")
    return folder / BACKBONE_WEIGHTS


def save_model(model: nn.Module, folder: str | Path, info: dict) -> Path:
    """The whole model (head included) as ``model.safetensors`` + ``model.json`` (``info``: at least
    ``model`` and ``num_classes``; the eval transform's ``image_size`` and ``crop_pct``), atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    info = portable_info(info, folder)   # labels relative to the folder, with name and fingerprints
    with atomic_file(folder / MODEL_WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata=safetensors_metadata(info))
    write_text_atomic(folder / MODEL_INFO, json.dumps(info, indent=2) + "\n")
    write_timm_config(folder, info, getattr(model, "num_features", None), head_prefix(model))   # timm local-dir:
    return folder / MODEL_WEIGHTS


def read_model_info(path: str | Path) -> dict | None:
    """The model.json beside a whole model (``path``: its folder or its model.safetensors), or None."""
    path = Path(path)
    meta = (path if path.is_dir() else path.parent) / MODEL_INFO
    return resolve_info(json.loads(meta.read_text(encoding="utf-8")), meta.parent) if meta.is_file() else None


def load_model(path: str | Path) -> tuple[nn.Module, dict]:
    """A model saved by :func:`save_model`: ``path`` is its folder or its ``model.safetensors``
    (local, or at a URL)."""
    from safetensors.torch import load_file

    path = local_model(path, (MODEL_WEIGHTS, MODEL_INFO))   # a URL: its copy in the local cache
    folder = path if path.is_dir() else path.parent
    weights, info = folder / MODEL_WEIGHTS, read_model_info(folder)
    if not weights.is_file() or info is None:
        raise FileNotFoundError(f"{path}: no {MODEL_WEIGHTS} with {MODEL_INFO} (a finished run folder, "
                                "its best/ folder, or a model.safetensors written by webtag)")
    if "model_config" in info:   # rebuilt as trained: pooling, ML-GCN or SRN head
        mcfg = saved_model_config(info)
        model = build_full_model(mcfg, info.get("labels", ""), info.get("target", "class"), int(info["num_classes"]))
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


def saved_model_config(info: dict) -> ModelConfig:
    """The ModelConfig a model.json records (``model_config``; files written before the head
    options moved under ``model`` keep ``gcn`` and ``srn`` beside it)."""
    from webtag.config import from_dict
    data = {**info["model_config"], "pretrained": False, "init_weights": ""}
    for head in ("gcn", "srn"):
        if head not in data and head in info:
            data[head] = info[head]
    return from_dict(ModelConfig, data)
