"""Inference over shards with one model or an ensemble: evaluation, prediction, pseudo-labels.

An ensemble averages the models' softmax probabilities image by image. Each model reads the
shards with its own eval transform (its image size and centre crop from model.json), through
the one evaluation loop (:func:`pretrain.evaluation.model_outputs`), which checks that the
models' batches line up.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import torch

from pipeline.loader import LoaderConfig, ShardLoader
from pretrain.evaluation import model_outputs
from pretrain.model import load_model
from webtag.atomic import write_text_atomic

from .metrics import ClassificationMeter


def load_models(paths: list[str], device) -> list[tuple[torch.nn.Module, dict]]:
    models = [load_model(p) for p in paths]
    sizes = {info["num_classes"] for _, info in models}
    if len(sizes) != 1:
        raise ValueError(f"the models have different numbers of classes {sorted(sizes)}: {paths}")
    return [(m.to(device).eval(), info) for m, info in models]


def model_loaders(models: list[tuple[torch.nn.Module, dict]], split_dir: str | Path, batch_size: int, workers: int,
                  device) -> list[ShardLoader]:
    """One eval loader per model, with its own eval transform (image size, crop) from model.json."""
    loaders = []
    for _, info in models:
        cfg = LoaderConfig(batch_size=batch_size, workers=workers, train=False, image_size=int(info["image_size"]),
                           crop_pct=float(info.get("crop_pct", 0.875)), pin_memory=torch.device(device).type == "cuda")
        loaders.append(ShardLoader(split_dir, cfg))
    return loaders


def ensemble_batches(models: list[tuple[torch.nn.Module, dict]], split_dir: str | Path, batch_size: int = 64,
                     workers: int = 2, device="cpu", activation: str = "softmax",
                     target: str | None = None) -> Iterator[tuple[torch.Tensor, dict]]:
    """(averaged probabilities of the real images, their batch fields) per batch; padding removed.
    ``activation``: softmax (single-label) or sigmoid (multi-label scores). With ``target``
    (keywords / weights) the fields hold the dense multi-label targets too."""
    loaders = model_loaders(models, split_dir, batch_size, workers, device)
    for outputs, batch, keep in model_outputs([m for m, _ in models], loaders, device):
        probs = sum(z.sigmoid() if activation == "sigmoid" else z.softmax(dim=1) for z in outputs)
        fields = {"class_id": batch["class_id"][keep], "index": batch["index"][keep]}
        if target is not None:
            from pretrain.losses import batch_targets
            fields["targets"] = (batch_targets(batch, target, probs.shape[1], "cpu")[keep] > 0)
        yield (probs / len(models)).cpu(), fields


def evaluate(models, split_dir, class_names: list[str] | None = None, **kw) -> tuple[dict, list[dict]]:
    """The metrics (:meth:`ClassificationMeter.result`) and the per-class rows."""
    meter = ClassificationMeter(models[0][1]["num_classes"])
    for probs, fields in ensemble_batches(models, split_dir, **kw):
        meter.update(probs, fields["class_id"])
    result = meter.result()
    if class_names:
        for c in result["confusions"]:
            c["true_name"], c["predicted_name"] = class_names[c["true"]], class_names[c["predicted"]]
    return result, meter.per_class()


def predict(models, split_dir, out: str | Path, k: int = 5, probs_out: str | Path | None = None,
            probs_k: int = 5, **kw) -> int:
    """Challenge-style submission (:mod:`finetune.submission`): one line per image of the split's
    file list, in its order, ``<list name> <top-k class ids, best first>``; with ``probs_out``
    also the top-``probs_k`` ids and probabilities per image. Checked against the list before
    anything is written (SubmissionError). Returns the number of lines."""
    import numpy as np

    from . import submission
    if probs_out:
        submission.check_probs_path(probs_out)
    kk = max(k, probs_k if probs_out else 0)
    ids, scores = {}, {}
    for probs, fields in ensemble_batches(models, split_dir, **kw):
        top = probs.topk(min(kk, probs.shape[1]), dim=1)
        for idx, i, v in zip(fields["index"].tolist(), top.indices.tolist(), top.values.tolist()):
            ids[idx], scores[idx] = i, v
    submission.check_complete(split_dir, ids)
    names = submission.list_names(split_dir)
    unnamed = sorted(set(ids) - set(names))
    if unnamed:
        raise submission.SubmissionError(f"{split_dir}: {len(unnamed)} predicted images have no name in the shards' "
                                         f"records (list positions {unnamed[:5]})")
    n = submission.write_submission(out, names, {i: v[:k] for i, v in ids.items()})
    if probs_out:
        order = sorted(ids)
        submission.write_probabilities(probs_out, [names[i] for i in order],
                                       np.array([ids[i][:probs_k] for i in order]),
                                       np.array([scores[i][:probs_k] for i in order]))
    return n


def transforms(models) -> list[dict]:
    """What a result JSON says of each model: name, image size and crop (its eval transform)."""
    return [{"model": info.get("model"), "image_size": info.get("image_size"), "crop_pct": info.get("crop_pct", 0.875),
             "step": info.get("step")} for _, info in models]


def write_json(path: str | Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")



def evaluate_multilabel(models, split_dir, target: str, threshold: float = 0.5, activation: str = "sigmoid",
                        **kw) -> dict:
    """mAP, CP/CR/CF1 and OP/OR/OF1 (finetune.metrics.multilabel_metrics) against the keyword
    (``target=keywords``) or label-weight (``weights``) label sets of the shards."""
    import numpy as np

    from .metrics import multilabel_metrics
    scores, targets = [], []
    for probs, fields in ensemble_batches(models, split_dir, activation=activation, target=target, **kw):
        scores.append(probs.numpy())
        targets.append(fields["targets"].numpy())
    return {**multilabel_metrics(np.concatenate(scores), np.concatenate(targets), threshold),
            "target": target, "activation": activation}
