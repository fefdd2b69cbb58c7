"""Inference over shards with one model or an ensemble: evaluation, prediction, pseudo-labels.

An ensemble averages the models' softmax probabilities image by image. Each model reads the
shards with its own eval transform (its image size and centre crop from model.json); the eval
loader's order does not depend on those, so the models' batches line up (checked on the ids).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import torch

from pipeline import schema
from pipeline.gpu_augment import GpuAugment
from pipeline.loader import LoaderConfig, ShardLoader
from pretrain.model import load_model
from webtag.atomic import atomic_file, write_text_atomic

from .metrics import ClassificationMeter


def load_models(paths: list[str], device) -> list[tuple[torch.nn.Module, dict]]:
    models = [load_model(p) for p in paths]
    sizes = {info["num_classes"] for _, info in models}
    if len(sizes) != 1:
        raise ValueError(f"the models have different numbers of classes {sorted(sizes)}: {paths}")
    return [(m.to(device).eval(), info) for m, info in models]


@torch.no_grad()
def ensemble_batches(models: list[tuple[torch.nn.Module, dict]], split_dir: str | Path, batch_size: int = 64,
                     workers: int = 2, device="cpu", activation: str = "softmax",
                     target: str | None = None) -> Iterator[tuple[torch.Tensor, dict]]:
    """(averaged probabilities of the real images, their batch fields) per batch; padding removed.
    ``activation``: softmax (single-label) or sigmoid (multi-label scores). With ``target``
    (keywords / weights) the fields hold the dense multi-label targets too."""
    device = torch.device(device)
    loaders = []
    for _, info in models:
        cfg = LoaderConfig(batch_size=batch_size, workers=workers, train=False, image_size=int(info["image_size"]),
                           crop_pct=float(info.get("crop_pct", 0.875)), pin_memory=device.type == "cuda")
        loaders.append(ShardLoader(split_dir, cfg))
    norm = GpuAugment(jitter=0.0).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    for batches in zip(*loaders):
        first = batches[0]
        keep = ~first["padding"]
        probs = None
        for (model, _), batch in zip(models, batches):
            if not torch.equal(batch["instance"], first["instance"]):
                raise RuntimeError("the ensemble's loaders went out of step")
            with autocast:
                logits = model(norm(batch["image"].to(device, non_blocking=True), train=False)).float()
            p = (logits.sigmoid() if activation == "sigmoid" else logits.softmax(dim=1))[keep.to(device)]
            probs = p if probs is None else probs + p
        fields = {"class_id": first["class_id"][keep], "instance": first["instance"][keep]}
        if target is not None:
            from pretrain.losses import batch_targets
            fields["targets"] = (batch_targets(first, target, probs.shape[1], "cpu")[keep] > 0)
        yield (probs / len(models)).cpu(), fields


def evaluate(models, split_dir, class_names: list[str] | None = None, **kw) -> dict:
    meter = ClassificationMeter(models[0][1]["num_classes"])
    for probs, fields in ensemble_batches(models, split_dir, **kw):
        meter.update(probs, fields["class_id"])
    result = meter.result()
    if class_names:
        for c in result["confusions"]:
            c["true_name"], c["predicted_name"] = class_names[c["true"]], class_names[c["predicted"]]
    return result


def keys_by_index(split_dir: str | Path) -> dict[int, str]:
    t = pq.read_table(Path(split_dir) / schema.MANIFEST_FILE, columns=["index", "key"]).to_pydict()
    return dict(zip(t["index"], t["key"]))


def predict(models, split_dir, out: str | Path, k: int = 5, **kw) -> int:
    """Challenge-style submission: one line per image, ``<key> <top-k class ids, best first>``,
    in the order of the split's list. Returns the number of lines."""
    keys = keys_by_index(split_dir)
    rows = {}
    for probs, fields in ensemble_batches(models, split_dir, **kw):
        top = probs.topk(min(k, probs.shape[1]), dim=1).indices.tolist()
        for idx, ids in zip(fields["instance"].tolist(), top):
            rows[idx] = ids
    with atomic_file(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for idx in sorted(rows):
            fh.write(keys[idx] + " " + " ".join(map(str, rows[idx])) + "\n")
    return len(rows)


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
