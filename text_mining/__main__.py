"""Command line of the text-mining stage.

    python -m text_mining run --webvision ROOT --out DIR [--workers N] [--config YAML] [key=value ...]
    python -m text_mining count --webvision ROOT --out DIR --part I --num-parts N [...]
    python -m text_mining vocabulary --webvision ROOT --out DIR [...]
    python -m text_mining tag --webvision ROOT --out DIR --part I --num-parts N [...]
    python -m text_mining merge --webvision ROOT --out DIR [...]
    python -m text_mining install-wordnet [--source /usr/share/wordnet] [--dest NLTK_DATA]
    python -m text_mining run --webdata DIR_OR_TABLE --classes SYNSETS --out DIR [...]   (web data)
    python -m text_mining inspect --labels MINED --webvision ROOT [--shards SHARDS] --out DIR

Each command holds the run lock of --out while it runs (webtag/lock.py): ``run``, ``vocabulary``
and ``merge`` the whole folder, ``count`` and ``tag`` their part (the parts of a Slurm array run
side by side); a second run into a folder in use is refused (exit 2) with the holder's pid and host.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from webtag.config import ConfigError, load_config
from webtag.lock import LockHeld, part_name, run_lock
from webtag.logs import setup_logging

from .config import TextMiningConfig

log = logging.getLogger("text_mining")


def _common(p: argparse.ArgumentParser, parts: bool) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--webvision", help="WebVision release root (holds info/)")
    src.add_argument("--webdata", metavar="DIR_OR_TABLE",
                     help="img2dataset output (folder of tar shards) or a .parquet/.csv table of "
                          "image, caption, optional label (text_mining/webdata.py); needs --classes")
    p.add_argument("--classes", help="with --webdata: a file of WordNet noun ids, one a line (as info/synsets.txt)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--config", help="YAML config (configs/text_mining/*.yaml); defaults if omitted")
    p.add_argument("--on-error", choices=["skip", "fail"], help="bad input: count and go on, or stop")
    if parts:
        p.add_argument("--part", type=int, default=None,
                       help="0-based part index (default: $SLURM_ARRAY_TASK_ID)")
        p.add_argument("--num-parts", type=int, required=True)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. vocabulary.min_df=3")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m text_mining", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the whole stage on this machine (multiprocessing)")
    _common(run, parts=False)
    run.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    run.add_argument("--num-parts", type=int, default=None, help="parts per map step (default: workers)")
    for name, helptext, parts in [("count", "map: read metadata, extract and count keywords", True),
                                  ("vocabulary", "reduce: vocabulary, word vectors, similarity tables", False),
                                  ("tag", "map: keyword ids and label weights", True),
                                  ("merge", "reduce: final Parquet tables and report", False)]:
        _common(sub.add_parser(name, help=helptext), parts)
    ins = sub.add_parser("inspect", help="static HTML report of a text-mining output (text_mining/inspect.py)")
    ins.add_argument("--labels", required=True, help="text-mining output folder")
    ins.add_argument("--webvision", help="release root: thumbnails from its images, text excerpts")
    ins.add_argument("--shards", help="shard folder: thumbnails from its train shards instead")
    ins.add_argument("--out", required=True, help="report folder (a previous report there is replaced)")
    ins.add_argument("--per-class", type=int, default=6, help="clean and suspect thumbnails per class")
    ins.add_argument("--seed", type=int, default=0, help="seed of the thumbnail sample")
    wn = sub.add_parser("install-wordnet", help="copy Debian's WordNet 3.0 into an nltk_data folder")
    wn.add_argument("--source", default="/usr/share/wordnet")
    wn.add_argument("--dest", default=None, help="nltk_data folder (default: <sys.prefix>/nltk_data)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    from .layout import OutputMismatch
    from .problems import InputError
    from .webvision import ReleaseError
    from .wordnet import WordNetMissing, install_wordnet

    try:
        if args.command == "install-wordnet":
            print(install_wordnet(args.source, args.dest))
            return 0
        if args.command == "inspect":
            from .inspect import inspect   # its errors (and the labels folder's) are ValueErrors
            inspect(args.labels, args.webvision, args.out, args.shards, per_class=args.per_class, seed=args.seed)
            print(f"{args.out}/index.html")
            return 0
        if getattr(args, "webdata", None):
            args.webvision = args.webdata
            if not args.classes:
                raise ConfigError("--webdata needs --classes FILE (the WordNet ids of the classes, one a line)")
        defaults = {"reader.on_error": args.on_error}
        if args.classes:
            defaults["reader.class_list"] = str(os.path.abspath(args.classes)) \
                if args.classes != "imagenet1k" else args.classes
        cfg = load_config(TextMiningConfig, args.config, args.overrides, defaults=defaults)
        part = getattr(args, "part", None)
        if args.command in ("count", "tag"):
            if part is None:
                env = os.environ.get("SLURM_ARRAY_TASK_ID")
                if env is None:
                    raise ConfigError("--part is required (or run as a Slurm array task)")
                part = int(env)
        # the run lock of --out (after the config was checked: a refused config leaves no trace)
        with run_lock(args.out, f"text_mining {args.command}",
                      part_name(args.command, part, args.num_parts) if args.command in ("count", "tag") else None,
                      create=args.command in ("run", "count")):   # the other steps need what those wrote
            if args.command == "run":
                from .runner import run_all
                run_all(args.webvision, args.out, cfg, args.workers, args.num_parts)
            elif args.command == "count":
                from .count import count_part
                count_part(args.webvision, args.out, cfg, part, args.num_parts)
            elif args.command == "vocabulary":
                from .vocabulary import build_vocabulary
                build_vocabulary(args.webvision, args.out, cfg)
            elif args.command == "tag":
                from .tag import tag_part
                tag_part(args.webvision, args.out, cfg, part, args.num_parts)
            elif args.command == "merge":
                from .merge import merge
                merge(args.webvision, args.out, cfg)
    except (ConfigError, InputError, ReleaseError, OutputMismatch, WordNetMissing, ValueError, LockHeld) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # a read-only or full --out: every output is published whole or not at all
        from webtag.cli import os_error_line
        print(os_error_line(exc, getattr(args, "out", "")), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
