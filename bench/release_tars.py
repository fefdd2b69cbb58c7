"""Benchmark: the shard writer reading the release's training archives against the same images
as extracted files, in one run.

    python bench/release_tars.py [--classes 40] [--images-per-class 100] [--archives 4]
                                 [--validate full|fast|none] [--repeats 3] [--workdir DIR]

Builds a generated WebVision-format example (text mining; kept in --workdir) and a copy whose
training images are packed into --archives tar files (webvision_train_XX.tar, as WebVision 2.0
ships them), then shards the train split of each in one process (one part, JPEGs kept as they
are, the same --validate mode), alternating files and archives --repeats times with the page
cache warm, and prints images per CPU-second (process time) and per wall-second of each (medians),
and checks that both give the same samples (keys, labels, image bytes).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import webdataset as wds  # noqa: E402

from example_data import example_release  # noqa: E402
from pipeline import schema  # noqa: E402
from pipeline.shards import ShardConfig, merge_split, split_samples, write_part  # noqa: E402
from webtag.logs import setup_logging  # noqa: E402
from webvision_example.tars import pack_train_archives  # noqa: E402


def _samples(split_dir: Path) -> dict:
    urls = [str(split_dir / n) for n in schema.read_sizes(split_dir)]
    return {s["__key__"]: (s["json"], s["cls"], s["jpg"]) for s in wds.WebDataset(urls, shardshuffle=False)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=40)
    ap.add_argument("--images-per-class", type=int, default=100)
    ap.add_argument("--archives", type=int, default=4)
    ap.add_argument("--validate", choices=["full", "fast", "none"], default="full")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    setup_logging("WARNING")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_release_tars_"))
    files, tars, mined = work / "release", work / "release_tars", work / "mined"
    example_release(files, mined, args.classes, args.images_per_class)
    if not tars.exists():
        shutil.copytree(files, tars)
        pack_train_archives(tars, (tars / "info" / "train_filelist_all.txt").read_text().splitlines(),
                            args.archives)
    samples = split_samples("train", files, mined)
    n = samples.num_rows
    cfg = ShardConfig(validate=args.validate)
    rates: dict[str, list[tuple[float, float]]] = {"files": [], "archives": []}
    for _ in range(max(1, args.repeats)):
        for name, root in (("files", files), ("archives", tars)):
            out = work / f"shards_{name}"
            shutil.rmtree(out, ignore_errors=True)
            cpu, wall = time.process_time(), time.perf_counter()
            report = write_part("train", samples, root, out, cfg, 0, 1)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            assert report["samples"] == n and report["skipped"] == 0, report["problems"]
            rates[name].append((n / cpu, n / wall))
    for name in rates:
        merge_split(work / f"shards_{name}", "train")
    same = _samples(work / "shards_files" / "train") == _samples(work / "shards_archives" / "train")
    print(f"{n} training images, {args.archives} archives, --validate {args.validate}, {args.repeats} repeats")
    med = {k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v)) for k, v in rates.items()}
    for name in ("files", "archives"):
        print(f"shard writer from {name}: {med[name][0]:.0f} images/s/core (CPU), {med[name][1]:.0f} images/s (wall)")
    print(f"archives / files: {med['archives'][0] / med['files'][0]:.2f} per CPU-second, "
          f"{med['archives'][1] / med['files'][1]:.2f} per wall-second; same samples: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
