"""Command line of the text-mining stage.

    python -m text_mining run --webvision ROOT --out DIR [--workers N] [--config YAML] [key=value ...]
    python -m text_mining count --webvision ROOT --out DIR --part I --num-parts N [...]
    python -m text_mining vocabulary --webvision ROOT --out DIR [...]
    python -m text_mining tag --webvision ROOT --out DIR --part I --num-parts N [...]
    python -m text_mining merge --webvision ROOT --out DIR [...]
    python -m text_mining install-wordnet [--source /usr/share/wordnet] [--dest NLTK_DATA]
    python -m text_mining run --webdata DIR_OR_TABLE --classes SYNSETS|imagenet1k --out DIR [...]   (web data)
    python -m text_mining run ... --out s3://bucket/labels [--stage DIR]   (staged locally, then uploaded)
    python -m text_mining upload LABELS URL   (a finished local output to object storage)
    python -m text_mining inspect --labels MINED --webvision ROOT [--shards SHARDS] --out DIR

Each command holds the run lock of --out while it runs (webtag/lock.py): ``run``, ``vocabulary``
and ``merge`` the whole folder, ``count`` and ``tag`` their part (the parts of a Slurm array run
side by side); a second run into a folder in use is refused (exit 2) with the holder's pid and host.
--webdata may be a URL (s3://...); --out may be one for ``run`` only (text_mining/publish.py).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from webtag.config import ConfigError, load_config
from webtag.lock import LockHeld, part_name, run_lock
from webtag.logs import setup_logging
from webtag.storage import is_url

from .config import TextMiningConfig

log = logging.getLogger("text_mining")


def _common(p: argparse.ArgumentParser, parts: bool) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--webvision", help="WebVision release root (holds info/)")
    src.add_argument("--webdata", metavar="DIR_OR_TABLE",
                     help="img2dataset output (folder of tar shards) or a .parquet/.csv table of "
                          "image, caption, optional label (text_mining/webdata.py), a local path or a "
                          "URL (s3://...); needs --classes")
    p.add_argument("--classes", help="with --webdata: a file of WordNet noun ids, one a line (as "
                                     "info/synsets.txt), or imagenet1k (the ImageNet-1k classes, from timm)")
    p.add_argument("--out", required=True, help="output folder (for run: also an s3:// or gs:// URL)")
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
    run.add_argument("--stage", help="with a URL --out: the local folder written before the upload "
                                     "(default _work/stage/text-mining-<name>-<hash>)")
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
    up = sub.add_parser("upload", help="upload a finished text-mining output to object storage")
    up.add_argument("labels", help="the finished local output folder (with complete.json)")
    up.add_argument("url", help="destination, e.g. s3://bucket/labels (complete.json is uploaded last)")
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
        if args.command == "upload":
            from .publish import publish_labels
            publish_labels(args.labels, args.url)
            print(args.url)
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
        remote = None
        if args.command == "run" and is_url(args.out):   # staged locally, uploaded when finished
            from .publish import stage_folder
            remote, args.out = args.out, str(stage_folder(args.out, args.stage))
        elif args.command != "run":
            from .publish import refuse_url_step
            refuse_url_step(args.command, args.out)
        # the run lock of --out (after the config was checked: a refused config leaves no trace)
        with run_lock(args.out, f"text_mining {args.command}",
                      part_name(args.command, part, args.num_parts) if args.command in ("count", "tag") else None,
                      create=args.command in ("run", "count")):   # the other steps need what those wrote
            if args.command == "run":
                from .runner import run_all
                run_all(args.webvision, args.out, cfg, args.workers, args.num_parts)
                if remote is not None:
                    from .publish import publish_labels
                    publish_labels(args.out, remote)
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
