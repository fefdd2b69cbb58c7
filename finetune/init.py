"""Where finetuning starts: the pretrained backbone with a new head, or a finetuned model.

Every tensor of the model except the last linear layer comes from the pretrained
``backbone.safetensors``; the head keeps its fresh random initialisation (timm's). Anything else
that does not line up (a missing or unexpected tensor, a shape) is an error listing the names."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from pretrain.backbone import head_prefix
from pretrain.model import (BACKBONE_INFO, BACKBONE_WEIGHTS, MODEL_INFO, MODEL_WEIGHTS, load_whole_model,
                            read_model_info)
from webtag.remote_copy import local_model


class InitError(ValueError):
    """The pretrained weights do not fit the model."""


def _resolve(path: str | Path, name: str) -> Path:
    """The weights file ``name`` of a run folder or the file itself; a URL's copy in the cache."""
    info = BACKBONE_INFO if name == BACKBONE_WEIGHTS else MODEL_INFO
    try:
        path = local_model(path, (name, info))
    except (OSError, ValueError) as exc:   # not there, unreadable, or no backend for the URL
        raise InitError(str(exc)) from None
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise InitError(f"{path} does not exist: give a run folder or its {name}")
    return path


def load_backbone(model: nn.Module, path: str | Path) -> dict:
    """Load a pretraining run's backbone into ``model`` (all but the head). Returns the backbone's
    description (backbone.json)."""
    from safetensors.torch import load_file

    weights = _resolve(path, BACKBONE_WEIGHTS)
    info_file = weights.parent / BACKBONE_INFO
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
    state = load_file(str(weights))
    head = head_prefix(model) + "."
    own = model.state_dict()
    expected = {k for k in own if not k.startswith(head)}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    shapes = sorted(f"{k}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model"
                    for k in expected & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        was = f" (pretrained as {info['model']})" if info.get("model") else ""
        raise InitError(f"{weights}{was} does not fit model {type(model).__name__}: "
                        f"missing {missing[:10] or 'none'}{' ...' if len(missing) > 10 else ''}; "
                        f"unexpected {unexpected[:10] or 'none'}{' ...' if len(unexpected) > 10 else ''}; "
                        f"shape mismatches {shapes[:10] or 'none'}")
    with torch.no_grad():
        for k in expected:
            own[k].copy_(state[k])
    return info


def load_whole(model: nn.Module, path: str | Path) -> dict:
    """Load a finetuned model (head included) into ``model``, strictly. Returns its model.json."""
    weights = _resolve(path, MODEL_WEIGHTS)
    try:
        load_whole_model(model, weights)
    except ValueError as exc:
        raise InitError(str(exc)) from None
    return read_model_info(weights) or {}
