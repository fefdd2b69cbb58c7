"""Command line of the pipeline stage: ``python -m pipeline <command> ...``.

Commands:
  shard         pack images and their text-mining labels into WebDataset shards
  shard-merge   the reduce step of a sharding run split into parts (Slurm)
  loader-check  one epoch of the streaming loader over a split: batches, speed, class balance
  upload        a finished local shards root to object storage (s3://, gs://)
"""
from __future__ import annotations

import argparse
import os
import sys

from webtag.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Shards and streaming: images + text-mining Parquet -> WebDataset shards "
                    "-> training batches.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    shard = commands.add_parser(
        "shard", help="pack images with their labels into WebDataset tar shards",
        description="Pack the training images (with the text-mining labels) and the validation "
                    "images into WebDataset shards, with manifest.parquet and sizes.json per split. "
                    "Without --part: every part on this machine, then the merge.")
    src = shard.add_mutually_exclusive_group(required=True)
    src.add_argument("--webvision", metavar="ROOT", help="WebVision release root")
    src.add_argument("--webdata", metavar="DIR_OR_TABLE",
                     help="web data the --labels were mined from (text_mining --webdata): img2dataset "
                          "tar shards, read directly, or a table (image paths relative to its folder)")
    shard.add_argument("--labels", metavar="DIR", help="text-mining output folder (images.parquet)")
    shard.add_argument("--out", required=True, metavar="SHARDS",
                       help="output folder, or an object-store URL (s3://bucket/shards): written to --stage, "
                            "then uploaded")
    shard.add_argument("--stage", metavar="DIR",
                       help="with a URL --out: the local folder written before the upload "
                            "(default _work/stage/NAME-HASH)")
    shard.add_argument("--split", choices=["train", "val", "test", "all"],
                       help="all (the default without --imagenet-val): train, val and test when the "
                            "release lists it")
    shard.add_argument("--imagenet-val", metavar="DIR",
                       help="also (or with no --split, only) pack the ILSVRC 2012 validation images of DIR "
                            "as the split imagenet_val, labelled by wnid with the class list")
    shard.add_argument("--imagenet-labels", metavar="FILE",
                       help="the mapping file of a flat --imagenet-val folder (default: found in or beside it)")
    shard.add_argument("--config", help="YAML config (configs/pipeline/shard.yaml)")
    shard.add_argument("--max-size", help="bytes of image data per shard, e.g. 1GB, 500MB")
    shard.add_argument("--max-count", type=int, help="samples per shard")
    shard.add_argument("--resize-shorter", type=int, metavar="S", help="re-encode to shorter side S")
    shard.add_argument("--on-error", choices=["skip", "fail"])
    shard.add_argument("--validate", choices=["full", "fast", "none"],
                       help="JPEG check: fast (structure and headers, no decode; default), full (and a decode), none")
    shard.add_argument("--images-root", help="where the release's images are (default: ROOT)")
    shard.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    shard.add_argument("--part", type=int, help="write only this part (default $SLURM_ARRAY_TASK_ID with --num-parts)")
    shard.add_argument("--num-parts", type=int)
    shard.add_argument("overrides", nargs="*", metavar="key=value")

    upload = commands.add_parser("upload", help="upload a finished shards root to object storage")
    upload.add_argument("shards", metavar="SHARDS", help="local shards root (shard --out)")
    upload.add_argument("url", metavar="URL", help="destination, e.g. s3://bucket/shards")
    merge = commands.add_parser("shard-merge", help="manifest, sizes.json and report of finished parts")
    merge.add_argument("--out", required=True, metavar="SHARDS")
    merge.add_argument("--split", choices=["train", "val", "test", "imagenet_val", "all"], default="all")
    check = commands.add_parser("loader-check", help="one epoch of the streaming loader over a split")
    check.add_argument("--shards", required=True, metavar="SHARDS",
                       help="the shards root (shard --out, data.shards), the folder with train/ and val/")
    check.add_argument("--split", default="train", metavar="NAME", help="the split to read (default train)")
    check.add_argument("--config", help="YAML: a training config (its loader: section) or a loader config")
    check.add_argument("--batch-size", type=int)
    check.add_argument("--workers", type=int)
    check.add_argument("--sampling", choices=["instance", "class", "sqrt", "keyword", "balanced"])
    check.add_argument("--rank", type=int, default=0)
    check.add_argument("--world-size", type=int, default=1)
    check.add_argument("overrides", nargs="*", metavar="loader.key=value",
                       help="as in the training configs, e.g. loader.image_size=64 (key=value also works)")
    return parser


def _loader_check(args) -> int:
    import time

    import numpy as np

    from pipeline.loader import LoaderConfig, ShardLoader
    from pipeline.schema import split_folder
    from webtag.config import load_config

    split = split_folder(args.shards, args.split)
    cfg = load_config(LoaderConfig, args.config, args.overrides, section="loader", defaults={   # loader.key=value
        "batch_size": args.batch_size, "workers": args.workers, "sampling": args.sampling})
    loader = ShardLoader(split, cfg, rank=args.rank, world_size=args.world_size)
    n_batches = len(loader)
    t = time.perf_counter()
    classes, padding, images = [], 0, 0
    for batch in loader:
        classes += batch["class_id"].tolist()
        padding += int(batch["meta"].padding.sum())
        images += len(batch["class_id"])
    dt = time.perf_counter() - t
    loader.close()   # its workers would go on into the next epoch
    hist = np.bincount(classes)
    print(f"{split}: rank {args.rank}/{args.world_size}, {n_batches} batches of {cfg.batch_size} "
          f"({images} images, {padding} padding) in {dt:.1f}s = {images / dt:.0f} images/s with "
          f"{cfg.workers} workers; sampling {cfg.sampling}: images per class min {hist[hist > 0].min()} "
          f"max {hist.max()} over {int((hist > 0).sum())} classes; samples lost (corrupt or unreadable, against the manifest): {loader.bad_samples}")
    _print_exposure(split, loader, cfg)
    return 0


def _print_exposure(split, loader, cfg) -> None:
    """Expected label exposure over the labels of ``loader.balance_over``, relative to uniform, under
    the loader's sampling and under none (pipeline/loader/balanced.py: draws for a label, and
    appearances as a target)."""
    from pipeline.loader.balanced import exposure, factors_by_position, read_labels, relative_percentiles

    table = read_labels(split, set(loader.sizes), cfg.balance_over)
    modes = [(cfg.sampling, loader.repeat)] + ([("instance", None)] if cfg.sampling != "instance" else [])
    for mode, repeat in modes:
        e = exposure(table, factors_by_position(table, repeat))
        for what in ("draws_for", "appearances"):
            p = relative_percentiles(e[what])
            print(f"label exposure ({mode}, {cfg.balance_over}, {what.replace('_', ' ')}, relative to uniform "
                  f"over {len(e[what])} labels): " + " ".join(f"{k} {v:.2f}" for k, v in p.items()))


def _shard(args) -> int:
    from pipeline.shards import ShardConfig, parse_size, shard_all, split_samples, write_part
    from webtag.config import load_config
    from webtag.lock import part_name, run_lock
    from webtag.storage import is_url
    TABLE_EXTS = (".parquet", ".csv")

    if args.webdata:   # train only (there are no val/test lists); a table's paths are relative to it
        args.webvision = args.webdata
        if args.images_root is None and is_url(args.webdata) and args.webdata.lower().endswith(TABLE_EXTS):
            args.images_root = args.webdata.rstrip("/").rsplit("/", 1)[0]   # a table at a URL
        elif args.images_root is None and os.path.isfile(args.webdata):
            args.images_root = os.path.dirname(os.path.abspath(args.webdata))
    cfg = load_config(ShardConfig, args.config, args.overrides, defaults={
        "max_size": parse_size(args.max_size) if args.max_size else None,
        "max_count": args.max_count, "resize_shorter": args.resize_shorter, "on_error": args.on_error,
        "validate": args.validate})
    from pipeline.schema import IMAGENET_VAL_SPLIT
    from pipeline.shards import release_splits

    if args.split is None and args.imagenet_val:
        splits = []
    else:
        splits = release_splits(args.webvision) if args.split in (None, "all") else [args.split]
    if args.imagenet_val:
        splits.append(IMAGENET_VAL_SPLIT)
    if args.labels:   # an unfinished labels folder is refused before --out is created or locked
        from text_mining.publish import local_labels   # a URL's finished output: a local copy
        from text_mining.schema import read_complete
        args.labels = str(local_labels(args.labels))
        read_complete(args.labels)
    part = args.part
    if part is None and args.num_parts and os.environ.get("SLURM_ARRAY_TASK_ID") is not None:
        part = int(os.environ["SLURM_ARRAY_TASK_ID"])
    remote = None
    if is_url(args.out):   # written locally, uploaded when finished (pipeline/publish.py)
        if part is not None:
            raise ValueError(f"--out {args.out} with --part: write the parts to a shared folder, run "
                             "shard-merge there, then `python -m pipeline upload SHARDS URL`")
        from pipeline.publish import stage_folder
        remote, args.out = args.out, str(stage_folder(args.out, args.stage))
    if part is None:
        with run_lock(args.out, "pipeline shard"):   # the whole of --out (webtag/lock.py)
            shard_all(args.webvision, args.labels, args.out, cfg, splits, args.workers, args.num_parts,
                      args.images_root, args.imagenet_val, args.imagenet_labels)
            if remote is not None:
                from pipeline.publish import publish_shards
                publish_shards(args.out, remote)
        return 0
    if not args.num_parts:
        raise ValueError("--part needs --num-parts")
    with run_lock(args.out, "pipeline shard", part_name("shard", part, args.num_parts)):   # this part only
        for split in splits:
            samples = split_samples(split, args.webvision, args.labels, cfg, args.imagenet_val, args.imagenet_labels)
            write_part(split, samples, args.webvision, args.out, cfg, part, args.num_parts, args.images_root)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    if args.command == "loader-check":
        from webtag.config import ConfigError
        try:
            return _loader_check(args)
        except (ConfigError, ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "upload":
        from pipeline.publish import publish_shards
        try:
            publish_shards(args.shards, args.url)
            return 0
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command in ("shard", "shard-merge"):
        from pipeline.shards import merge_split
        from webtag.config import ConfigError
        from webtag.lock import LockHeld, run_lock
        from webtag.problems import InputError

        try:
            if args.command == "shard":
                return _shard(args)
            with run_lock(args.out, "pipeline shard-merge", create=False):
                from pipeline.schema import SPLITS
                from pathlib import Path
                for split in ([s for s in (*SPLITS, "imagenet_val") if (Path(args.out) / s / "_parts").is_dir()]
                              if args.split == "all" else [args.split]):
                    merge_split(args.out, split)
            return 0
        except (ConfigError, InputError, ValueError, FileNotFoundError, LockHeld) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:   # a read-only or full --out: what was published before stays whole
            from webtag.cli import os_error_line
            print(os_error_line(exc, args.out), file=sys.stderr)
            return 2
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
