"""Command line of the finetuning stage.

    accelerate launch finetune/main.py --config configs/finetune/webvision.yaml init=PATH [key=value ...]
    python -m finetune train --config ... [key=value ...]                 (one process)
    python -m finetune evaluate --checkpoints PATH [PATH ...] --shards SHARDS [--split val] [--out FILE]
    python -m finetune predict --checkpoints PATH [PATH ...] --shards SHARDS [--split test] --out FILE [--probs FILE.npz]
    python -m finetune pseudo-label --checkpoints A [B ...] --shards SHARDS [--split train] --labels DIR --threshold T --out DIR
    python -m finetune ensemble --checkpoints A B [...] --shards SHARDS [--split val] [--predict FILE] [--out FILE]
    python -m finetune retrieve --checkpoint PATH --shards SHARDS --queries val --gallery val [--fit-whitening train]
    python -m finetune export --checkpoint RUN[/best] --out DIR [--push-to-hub USER/REPO]   (finetune/export.py)
    python -m finetune knn-eval --checkpoint RUN|none --train SHARDS/train --eval SHARDS/val [--k 20] [--linear-probe]
    python -m finetune report --run RUN [--eval EVAL_JSON] [--out DIR]        (finetune/report.py)

predict and ensemble --predict write the challenge's submission (finetune/submission.py): one line
per image of the split's file list, in its order, keyed by the list's file names, then the top-5
class ids; a result JSON beside it. evaluate writes top-1/top-5 and their class-balanced forms to
its JSON and a per-class table beside it (eval-val-per-class.csv).

SHARDS is the shards root, as in the configs' data.shards (the folder `python -m pipeline shard
--out` wrote, with train/ and val/); --split, --queries, --gallery and --fit-whitening name splits
in it. --checkpoint is another name of --checkpoints: one model or several, whose probabilities
are averaged (retrieve takes one). A checkpoint is a finished run folder (its model.safetensors +
model.json), its best/ folder, or that model.safetensors. The shards must have been built from
the labels each model was trained on (model.json's labels folder: its class list, or with
--target keywords|weights its whole fingerprint) and pseudo-label's --labels: a mismatch is refused
with both named. Exit status: 0 done, 2 bad arguments, config or data (a mismatch included),
3 non-finite loss.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from webtag.cli import run_training, setup_rank_logging
from webtag.remote_copy import local_model, upload
from webtag.storage import is_url

log = logging.getLogger("finetune")


def train(argv: list[str]) -> int:
    from finetune.config import FinetuneConfig
    from finetune.init import InitError
    from finetune.trainer import FinetuneTrainer
    from pretrain.data import DataError
    from pretrain.trainer import NonFiniteLoss
    return run_training(argv, FinetuneConfig, FinetuneTrainer, "accelerate launch finetune/main.py",
                        "YAML config (configs/finetune/*.yaml)", __doc__,
                        input_errors=(DataError, InitError, FileNotFoundError), nonfinite_errors=(NonFiniteLoss,))


def _shards_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shards", required=True, metavar="SHARDS",
                   help="the shards root (data.shards; pipeline shard --out), the folder with train/ and val/")


def _infer_args(p: argparse.ArgumentParser, split: str = "val") -> None:
    p.add_argument("--checkpoints", "--checkpoint", dest="checkpoints", nargs="+", required=True, metavar="PATH",
                   help="finished run folder(s), best/ folder(s) or model.safetensors; several: their averaged "
                        "probabilities (--checkpoint is the same option)")
    _shards_arg(p)
    p.add_argument("--split", default=split, metavar="NAME", help=f"the split of SHARDS to read (default {split})")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m finetune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="finetune in this process (multi-process: accelerate launch finetune/main.py)",
                   add_help=False)
    ev = sub.add_parser("evaluate", help="top-1, top-5, mean per-class accuracy, confusions")
    _infer_args(ev)
    ev.add_argument("--out", help="JSON file (default: <checkpoint folder>/eval-<split>.json)")
    ev.add_argument("--target", choices=["class", "keywords", "weights"], default="class",
                    help="keywords / weights: multi-label metrics (mAP, CP/CR/CF1, OP/OR/OF1) on those label sets")
    ev.add_argument("--threshold", type=float, default=0.5, help="multi-label: score threshold for P/R/F1")
    ev.add_argument("--activation", choices=["sigmoid", "softmax"], default="sigmoid",
                    help="multi-label: scores from sigmoids (BCE/ASL models) or a softmax (soft-CE models)")
    rt = sub.add_parser("retrieve", help="nearest neighbours in embedding space; mAP and precision@k")
    rt.add_argument("--checkpoint", required=True)
    _shards_arg(rt)
    rt.add_argument("--queries", required=True, metavar="NAME", help="the split of SHARDS whose images are the queries")
    rt.add_argument("--gallery", required=True, metavar="NAME", help="the split of SHARDS searched (may be the queries')")
    rt.add_argument("--k", type=int, default=10)
    rt.add_argument("--image-size", type=int, default=None, help="e.g. 500 or 800 (default: the model's)")
    rt.add_argument("--gem-p", type=float, default=None, help="GeM models: the exponent p at this resolution")
    rt.add_argument("--whitening", help="a .npz fitted earlier (finetune.whitening)")
    rt.add_argument("--fit-whitening", metavar="NAME", help="fit PCA whitening on the embeddings of this split "
                    "of SHARDS and save it as <checkpoint folder>/whitening.npz")
    rt.add_argument("--batch-size", type=int, default=64)
    rt.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    rt.add_argument("--device", default=None)
    rt.add_argument("--out", help="JSON file of the figures (default: <checkpoint folder>/retrieval.json)")
    pr = sub.add_parser("predict", help="top-5 class ids per image (challenge-style submission)")
    _infer_args(pr)
    pr.add_argument("--out", required=True, help="the submission file")
    _submission_args(pr)
    ps = sub.add_parser("pseudo-label", help="confident predictions replace the web labels")
    _infer_args(ps, split="train")
    ps.add_argument("--labels", required=True, help="the text-mining folder the shards were made from")
    ps.add_argument("--threshold", type=float, required=True)
    ps.add_argument("--out", required=True, help="a new labels folder (must not exist)")
    en = sub.add_parser("ensemble", help="average the models' probabilities; evaluate and/or predict")
    _infer_args(en)
    en.add_argument("--predict", help="also write a submission file here")
    _submission_args(en)
    en.add_argument("--out", help="JSON file of the evaluation")
    from .knn_eval import add_parser as add_knn_eval
    add_knn_eval(sub)
    from .export import add_arguments as export_arguments
    export_arguments(sub.add_parser("export", help="a run as a timm / Hugging Face Hub model folder with a model card"))
    from .report import add_arguments as report_arguments
    report_arguments(sub.add_parser("report", help="a run's curves and most confused classes as PNG + HTML"))
    return ap


def _submission_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--probs", metavar="FILE", help="also the top-k class ids and probabilities per image (.npz or .parquet)")
    p.add_argument("--probs-top-k", type=int, default=5, metavar="K")
    p.add_argument("--result", metavar="FILE", help="the result JSON (default: beside the submission, <name>.json)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    setup_rank_logging()
    if argv and argv[0] == "train":
        return train(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "export":
        from .export import main as export_main
        return export_main(args)
    if args.command == "report":
        from .report import main as report_main
        return report_main(args)
    if args.command == "knn-eval":
        from .knn_eval import run as knn_eval
        return knn_eval(args)
    import torch

    from pipeline.schema import split_folder

    from . import infer
    from .pseudo import pseudo_label
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    wanted = ((("--queries", args.queries), ("--gallery", args.gallery), ("--fit-whitening", args.fit_whitening))
              if args.command == "retrieve" else (("--split", args.split),))
    try:
        splits = {name: split_folder(args.shards, name, flag) for flag, name in wanted if name}
    except ValueError as exc:   # a split folder given as --shards, or a split that is not there
        log.error("%s", exc)
        return 2
    if args.command == "retrieve":
        return _retrieve(args, splits, device)
    split = splits[args.split]
    try:
        models = infer.load_models(args.checkpoints, device)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        log.error("%s", exc)
        return 2
    level = "labels" if getattr(args, "target", "class") != "class" else "classes"
    try:
        _check_pairings(models, args.checkpoints, split, level)
    except ValueError as exc:   # shards of other labels than a model's
        log.error("%s", exc)
        return 2
    kw = dict(batch_size=args.batch_size, workers=args.workers, device=device)
    names = _class_names(models[0][1])
    if args.command == "pseudo-label":
        try:
            report = pseudo_label(models, split, args.labels, args.threshold, args.out,
                                  checkpoints=args.checkpoints, **kw)
        except (ValueError, FileExistsError) as exc:
            log.error("%s", exc)
            return 2
        print(f"{report['relabelled_from_shards']} images read, {report['confident']} confident "
              f"(p >= {args.threshold}), {report['changed']} labels changed ({report['changed_share']:.1%}); "
              f"new labels in {args.out}")
        return 0
    if args.command == "predict" or (args.command == "ensemble" and args.predict):
        from .submission import SubmissionError, result_path
        target = args.out if args.command == "predict" else args.predict
        t0 = time.time()
        try:
            n = infer.predict(models, split, target, probs_out=args.probs, probs_k=args.probs_top_k, **kw)
        except (SubmissionError, ValueError) as exc:
            log.error("%s", exc)
            return 2
        res = args.result or str(result_path(target))
        infer.write_json(res, {"checkpoints": args.checkpoints, "models": infer.transforms(models),
                               "shards": str(split), "split": split.name, "images": n, "submission": str(target),
                               "probabilities": args.probs, "seconds": round(time.time() - t0, 3),
                               "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        print(f"{n} predictions -> {target} (result {res})")
        if args.command == "predict":
            return 0
    if args.command == "evaluate" and args.target != "class":
        result = infer.evaluate_multilabel(models, split, args.target, args.threshold, args.activation, **kw)
        out = args.out or str(_folder(args.checkpoints[0]) / f"eval-{split.name}-{args.target}.json")
        infer.write_json(out, {**result, "checkpoints": args.checkpoints, "shards": str(split)})
        if not args.out:
            _beside(args.checkpoints[0], out)
        print(f"{args.checkpoints[0]} on {split} ({args.target}, {result['images']} images): mAP {result['mAP']:.4f}; "
              f"at {args.threshold}: CP {result['CP']:.4f} CR {result['CR']:.4f} CF1 {result['CF1']:.4f} "
              f"OP {result['OP']:.4f} OR {result['OR']:.4f} OF1 {result['OF1']:.4f}\nsaved {out}")
        return 0
    from .per_class import class_table, per_class_path, write_per_class
    result, rows = infer.evaluate(models, split, names, **kw)
    out = args.out or str(_folder(args.checkpoints[0]) / f"eval-{split.name}.json")
    result.update(checkpoints=args.checkpoints, models=infer.transforms(models), shards=str(split), split=split.name)
    if result["images"] == 0 and args.command == "ensemble" and args.predict:
        print(f"{split} has no labelled image: predictions only")
        return 0
    if result["images"] == 0:
        log.error("%s has no labelled image (a test split?): nothing to evaluate; use predict", split)
        return 2
    table = class_table(models[0][1].get("labels"), int(models[0][1]["num_classes"]))
    write_per_class(per_class_path(out), rows, table)
    infer.write_json(out, result)
    if not args.out:
        _beside(args.checkpoints[0], out, per_class_path(out))
    print(f"{'ensemble of ' + str(len(models)) + ' models' if len(models) > 1 else args.checkpoints[0]} on "
          f"{split}: {result['images']} images, top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}, "
          f"balanced top-1 {result['top1_balanced']:.4f}, top-5 {result['top5_balanced']:.4f} "
          f"({result['classes_evaluated']} classes, {result['classes_absent']} absent from {split.name})")
    for c in result["confusions"][:5]:
        print(f"  confused: {c.get('true_name', c['true'])} -> {c.get('predicted_name', c['predicted'])} x{c['count']}")
    print(f"saved {out}")
    return 0


def _check_pairings(models, checkpoints: list[str], split: Path, level: str) -> None:
    """Each model against the shards it reads: the split must record the labels (``classes``: the
    class list) of the folder the model was trained on (model.json ``labels``). A model whose
    labels folder is not here or not finished, or shards from before fingerprints, are only
    warned about: evaluation writes no model."""
    from pipeline.schema import ShardsMismatch, check_labels
    from text_mining.schema import LabelsError
    for path, (_, info) in zip(checkpoints, models):
        labels = info.get("labels")
        try:
            if not labels:
                raise LabelsError("its model.json names no labels folder")
            check_labels(split, labels, level, old="warn")
        except ShardsMismatch as exc:
            raise ShardsMismatch(f"{path} was trained on {labels}, but {exc}") from None
        except LabelsError as exc:
            log.warning("%s: cannot check that %s matches its labels: %s", path, split, exc)


def _class_names(info: dict) -> list[str] | None:
    labels = info.get("labels")
    if not labels:
        return None
    from text_mining import schema as tm
    path = Path(labels) / tm.CLASSES_FILE
    if not path.is_file():
        return None
    import pyarrow.parquet as pq
    t = pq.read_table(path, columns=["class_id", "name"]).to_pydict()
    names = [""] * (max(t["class_id"]) + 1 if t["class_id"] else 0)
    for i, n in zip(t["class_id"], t["name"]):
        names[i] = n
    return names if len(names) == info.get("num_classes") else None


def _folder(checkpoint: str) -> Path:
    """The checkpoint's folder, where results go by default (a URL's: its local copy)."""
    from pretrain.model import MODEL_INFO, MODEL_WEIGHTS
    p = local_model(checkpoint, (MODEL_WEIGHTS, MODEL_INFO))
    return p if p.is_dir() else p.parent


def _beside(checkpoint: str, *written) -> None:
    """A checkpoint at a URL: upload the results written in its local copy beside it there."""
    if not is_url(checkpoint):
        return
    remote = checkpoint.rstrip("/")
    if remote.endswith(".safetensors"):
        remote = remote.rsplit("/", 1)[0]
    for path in written:
        upload(path, f"{remote}/{Path(path).name}")
        print(f"uploaded {remote}/{Path(path).name}")


def _retrieve(args, splits: dict[str, Path], device) -> int:
    """``splits``: the split folders of --queries, --gallery and --fit-whitening by name."""
    import numpy as np

    from pretrain.model import load_model

    from . import infer
    from .retrieval import embed, evaluate_retrieval
    from .whitening import PCAWhitening
    try:
        model, info = load_model(args.checkpoint)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        log.error("%s", exc)
        return 2
    if args.gem_p is not None:
        import torch

        from pretrain.multigrain import GeM
        gems = [m for m in model.modules() if isinstance(m, GeM)]
        if not gems:
            log.error("--gem-p: %s has no GeM pooling", args.checkpoint)
            return 2
        for g in gems:
            if isinstance(g.p, torch.nn.Parameter):
                g.p.data.fill_(args.gem_p)
            else:
                g.p = args.gem_p
    model = model.to(device).eval()
    kw = dict(image_size=args.image_size, batch_size=args.batch_size, workers=args.workers, device=device)
    q_feat, q_cls, q_ids = embed(model, info, splits[args.queries], **kw)
    same = args.queries == args.gallery
    g_feat, g_cls, g_ids = (q_feat, q_cls, q_ids) if same else embed(model, info, splits[args.gallery], **kw)
    whitening = None
    if args.fit_whitening:
        fit_feat = embed(model, info, splits[args.fit_whitening], **kw)[0]
        whitening = PCAWhitening.fit(fit_feat)
        saved = _folder(args.checkpoint) / "whitening.npz"
        whitening.save(saved)
        _beside(args.checkpoint, saved)
    elif args.whitening:
        whitening = PCAWhitening.load(args.whitening)
    exclude = None
    if same:   # an image is not its own neighbour
        pos = {int(i): n for n, i in enumerate(g_ids)}
        exclude = np.array([pos.get(int(i), -1) for i in q_ids])
    result = evaluate_retrieval(q_feat, q_cls, g_feat, g_cls, args.k, exclude, whitening)
    result.update(checkpoint=args.checkpoint, queries_split=str(splits[args.queries]),
                  gallery_split=str(splits[args.gallery]),
                  image_size=args.image_size or info["image_size"])
    out = args.out or str(_folder(args.checkpoint) / "retrieval.json")
    infer.write_json(out, result)
    if not args.out:
        _beside(args.checkpoint, out)
    print(f"{result['queries']} queries x {result['gallery']} gallery images: mAP {result['mAP']:.4f}, "
          f"precision@{result['k']} {result['precision@' + str(result['k'])]:.4f}"
          f"{' (whitened)' if whitening is not None else ''}\nsaved {out}")
    return 0
