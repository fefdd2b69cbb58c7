"""Command line: ``python -m webvision_example --out DIR [...]`` writes an example release;
``--img2dataset DIR`` writes its training images as img2dataset output instead."""
from __future__ import annotations

import argparse
import sys

from webtag.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m webvision_example",
        description="Write a small WebVision-format dataset (real WordNet classes, messy web "
                    "text, class-dependent JPEGs) into a new or empty folder. Same arguments "
                    "give byte-identical output.",
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (must not exist or be empty)")
    parser.add_argument("--img2dataset", metavar="DIR",
                        help="instead: write the training images as img2dataset output (tar shards of "
                             ".jpg/.txt/.json, per-shard .parquet and _stats.json, synsets.txt) into DIR")
    parser.add_argument("--classes", type=int, default=10, metavar="N",
                        help="number of classes (default 10)")
    parser.add_argument("--images-per-class", type=int, default=24, metavar="M",
                        help="training images per class, over both sources (default 24)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument("--version", choices=["1.0", "2.0"], default="1.0",
                        help="WebVision release layout (default 1.0)")
    parser.add_argument("--val-per-class", type=int, default=3, metavar="K",
                        help="validation images per class (default 3)")
    parser.add_argument("--train-tars", type=int, default=0, metavar="N",
                        help="write the training images into N tar archives webvision_train_XX.tar (as "
                             "WebVision 2.0 ships them) instead of folders (default 0: folders)")
    parser.add_argument("--no-images", dest="images", action="store_false",
                        help="write lists and metadata only, no image files")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    if bool(args.out) == bool(args.img2dataset):
        parser.exit(2, f"{parser.prog}: error: give one of --out DIR or --img2dataset DIR\n")
    if args.img2dataset:
        from webvision_example.img2dataset import make_img2dataset
        try:
            s = make_img2dataset(args.img2dataset, classes=args.classes,
                                 images_per_class=args.images_per_class, seed=args.seed)
        except ValueError as exc:
            parser.exit(2, f"{parser.prog}: error: {exc}\n")
        print(f"wrote {s['out']}: img2dataset-style example, {s['classes']} classes, {s['samples']} "
              f"samples in {s['shards']} tar shards, classes in {s['out']}/synsets.txt")
        return 0
    from webvision_example.release import make_example

    try:
        s = make_example(args.out, classes=args.classes, images_per_class=args.images_per_class,
                         seed=args.seed, version=args.version, val_per_class=args.val_per_class,
                         images=args.images, train_tars=args.train_tars)
    except ValueError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    print(f"wrote {s['out']}: WebVision {s['version']} example, seed {s['seed']}, "
          f"{s['classes']} classes, {s['queries']} queries, {s['train_total']} train images "
          f"(google {s['train']['google']}, flickr {s['train']['flickr']}), {s['val']} val, "
          f"{s['test']} test, {s['json_files']} json files"
          + ("" if args.images else ", no image files"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
