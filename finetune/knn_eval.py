"""``python -m finetune knn-eval``: k-NN (and optionally linear-probe) classification on frozen
features of a model, to compare pretrainings (WT-Set, LW-Set, none) before a full finetune.

    python -m finetune knn-eval --checkpoint RUN --train SHARDS/train --eval SHARDS/val [SHARDS/imagenet_val]
                                [--k 10 20 100] [--temperature 0.07] [--linear-probe] [--out FILE]
    python -m finetune knn-eval --checkpoint none --model resnest101e --image-size 224 ...

RUN: a pretraining or finetuning run folder (or its best/, or a model.safetensors); ``none``: the
timm model ``--model`` with random weights (seeded), the no-pretraining baseline. The features are
the model's pooled features (its classifier's input), each split read with the eval transform
(the model's image size and centre crop). --train and --eval are split folders (they hold
sizes.json). Figures per evaluated split: top-1, top-5 and their class-balanced forms for each k
(and the probe); written to --out (default <run folder>/knn-eval.json; with ``none``: knn-eval.json here).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from pathlib import Path

import torch

log = logging.getLogger("finetune")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("knn-eval", help="k-NN / linear-probe accuracy on frozen features (compare pretrainings)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder, best/ or model.safetensors; 'none': --model, random")
    p.add_argument("--model", help="with --checkpoint none: the timm model name")
    p.add_argument("--image-size", type=int, default=None, help="default: the model's (224 with none)")
    p.add_argument("--crop-pct", type=float, default=None, help="default: the model's (0.875 with none)")
    p.add_argument("--train", required=True, metavar="SPLIT_DIR", help="the split whose features vote, e.g. SHARDS/train")
    p.add_argument("--eval", required=True, nargs="+", metavar="SPLIT_DIR", help="split(s) classified, e.g. SHARDS/val")
    p.add_argument("--k", type=int, nargs="+", default=[20], help="numbers of neighbours (default 20)")
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--linear-probe", action="store_true", help="also a logistic-regression probe on the features")
    p.add_argument("--probe-epochs", type=int, default=10)
    p.add_argument("--probe-lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--device", default=None)
    p.add_argument("--out", help="JSON file of the figures")
    return p


def _model(args) -> tuple[torch.nn.Module, dict]:
    if args.checkpoint.lower() == "none":
        if not args.model:
            raise ValueError("--checkpoint none needs --model NAME (a timm model)")
        import timm
        torch.manual_seed(args.seed)
        try:
            model = timm.create_model(args.model, pretrained=False, num_classes=1)
        except RuntimeError as exc:
            raise ValueError(f"--model {args.model}: {exc}") from None
        return model.eval(), {"model": args.model, "image_size": 224, "crop_pct": 0.875, "num_classes": None}
    from pretrain.model import load_model
    return load_model(args.checkpoint)


def _split(path: str) -> Path:
    from pipeline.schema import SIZES_FILE
    p = Path(path)
    if not (p / SIZES_FILE).is_file():
        raise ValueError(f"{p} is not a finished shard split (no {SIZES_FILE}): give a split folder, e.g. SHARDS/val")
    return p


@torch.no_grad()
def features(model, split_dir: Path, image_size: int, crop_pct: float, batch_size: int, workers: int,
             device) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled features N x D on the CPU, class ids) of a split, in the loader's order."""
    from pipeline.loader import LoaderConfig, ShardLoader
    from pretrain.evaluation import model_outputs

    from .retrieval import PooledFeatures
    cfg = LoaderConfig(batch_size=batch_size, workers=workers, train=False, image_size=image_size, crop_pct=crop_pct)
    pooled = PooledFeatures(model)
    feats, labels = [], []
    try:
        for (f,), batch, keep in model_outputs([pooled], [ShardLoader(split_dir, cfg)], device,
                                               autocast=contextlib.nullcontext):
            feats.append(f.float().cpu())
            labels.append(batch["class_id"][keep])
    finally:
        pooled.hook.remove()
    return torch.cat(feats), torch.cat(labels)


def _figures(meter) -> dict:
    r = meter.result()
    return {k: r[k] for k in ("images", "top1", "top5", "top1_balanced", "top5_balanced",
                              "classes_evaluated", "classes_absent")}


def class_count(train_labels: torch.Tensor, info: dict) -> int:
    """The classes of a k-NN evaluation: the shards' class ids, and a head's width only when its
    target is the class (a WT-Set run's head is its keyword vocabulary: 106 outputs on the example,
    whose 8 classes were reported as "98 absent")."""
    head_classes = info.get("num_classes") if info.get("target", "class") == "class" else None
    return int(max(train_labels.max().item() + 1, head_classes or 0))


def run(args) -> int:
    from . import infer
    from .knn import knn_evaluate, linear_probe, probe_evaluate
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model, info = _model(args)
        train_dir, eval_dirs = _split(args.train), [_split(e) for e in args.eval]
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    model = model.to(device).eval()
    size = args.image_size or int(info["image_size"])
    crop = args.crop_pct or float(info.get("crop_pct", 0.875))
    kw = dict(image_size=size, crop_pct=crop, batch_size=args.batch_size, workers=args.workers, device=device)
    t0 = time.time()
    train_feat, train_labels = features(model, train_dir, **kw)
    num_classes = class_count(train_labels, info)
    head = None
    if args.linear_probe:
        head = linear_probe(train_feat.to(device), train_labels.to(device), num_classes, epochs=args.probe_epochs,
                            lr=args.probe_lr, seed=args.seed)
    result = {"checkpoint": args.checkpoint, "model": info.get("model"), "image_size": size, "crop_pct": crop,
              "train": str(train_dir), "train_images": int(len(train_feat)), "temperature": args.temperature,
              "feature_dim": int(train_feat.shape[1]), "num_classes": num_classes, "eval": {}}
    for eval_dir in eval_dirs:
        feat, labels = features(model, eval_dir, **kw)
        fig = {f"knn@{k}": _figures(m) for k, m in
               knn_evaluate(train_feat.to(device), train_labels.to(device), feat.to(device), labels,
                            args.k, args.temperature, num_classes).items()}
        if head is not None:
            fig["linear_probe"] = {**_figures(probe_evaluate(head, feat.to(device), labels, num_classes)),
                                   "epochs": args.probe_epochs, "lr": args.probe_lr}
        result["eval"][str(eval_dir)] = fig
        for name, f in fig.items():
            print(f"{eval_dir} {name}: {f['images']} images, top-1 {f['top1']:.4f}, top-5 {f['top5']:.4f}, "
                  f"balanced top-1 {f['top1_balanced']:.4f}, top-5 {f['top5_balanced']:.4f} "
                  f"({f['classes_evaluated']} classes, {f['classes_absent']} absent)")
    result["seconds"] = round(time.time() - t0, 3)
    if args.checkpoint.lower() == "none":
        out = args.out or "knn-eval.json"
    else:
        p = Path(args.checkpoint)
        out = args.out or str((p if p.is_dir() else p.parent) / "knn-eval.json")
    infer.write_json(out, result)
    print(f"saved {out}")
    return 0
