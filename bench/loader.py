"""Benchmark of the shard writer and the streaming loader.

    python bench/loader.py [--classes 40] [--images-per-class 100] [--workers N] [--batch 64]
                           [--image-size 224] [--epochs 2] [--repeats 5] [--device cpu|cuda]
                           [--workdir DIR] [--images DIR] [--read-ahead N]

Builds a generated WebVision-format example (text mining + shards; kept in --workdir), then
measures in one run:
- the shard writer's images per CPU-second (one process, JPEGs kept as they are) with each of
  ``--validate full|fast|none``, against a plain PIL loop (read, full decode) over the same files;
- with --images DIR: the example's training images replaced by the real JPEGs of DIR (cycled;
  e.g. camera photos), so every figure is measured on them;
- the full loader (tar reading, shuffle buffer, decode, RandomResizedCrop, flip, batching, worker
  processes) over --epochs consecutive epochs from a cold start, in images/s per worker core,
  against a plain loop that decodes and augments the same JPEGs (already in memory) into one
  reused array with the same code on one core: overhead = 1 - loader / plain (goal <= 5%), for
  the whole run and for the epochs after the first (the steady state of a long training run: no
  fork, shuffle-buffer fill or first touches of fresh pages); and
  the CPU-seconds per image of both (rusage: the loader's workers and main process together), a
  figure that other jobs on a shared machine disturb less than the wall clock;
- where the loader's extra CPU goes: one epoch of its workers' own code (StreamDataset) run in
  the main process (no fork, fresh batch arrays instead of the ring), against the plain loop, and
  the sample stream alone (tar members, label checks, shuffle buffer; no decode) per sample;
- the lean tar reader (pipeline.loader.tar.iter_tar) against tarfile's streaming mode and
  webdataset's tar_file_iterator, members/s over the same shards (page cache warm);
- the loader's peak resident memory (main process + workers);
- with --device cuda: the GPU decode path (nvJPEG + one batched roi_align) in images/s.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from example_data import example_release  # noqa: E402
from pipeline import schema  # noqa: E402
from pipeline.loader import BadSamples, CpuAugment, LoaderConfig, ShardLoader, gpu_decode, iter_tar, read_shard  # noqa: E402
from pipeline.shards import ShardConfig, merge_split, split_samples, write_part  # noqa: E402
from webtag.logs import setup_logging  # noqa: E402


def tar_readers(paths: list[Path], repeats: int = 3) -> dict[str, float]:
    """Members/s of each tar reader over ``paths`` (every member's bytes read), best of ``repeats``."""
    import tarfile

    import webdataset.tariterators as wti

    def ours():
        bad = BadSamples(1e9)
        return sum(1 for p in paths for _ in iter_tar(p, bad))

    def tarfile_stream():
        n = 0
        for p in paths:
            with tarfile.open(p, "r|") as tar:
                for m in tar:
                    if m.isfile():
                        tar.extractfile(m).read()
                        n += 1
        return n

    def webdataset():
        n = 0
        for p in paths:
            with open(p, "rb") as fh:
                n += sum(1 for _ in wti.tar_file_iterator(fh))
        return n

    rates = {}
    for name, fn in (("ours", ours), ("tarfile", tarfile_stream), ("webdataset", webdataset)):
        best = 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            n = fn()
            best = max(best, n / (time.perf_counter() - t))
        rates[name] = best
    return rates


class PeakRss:
    """Samples the memory (PSS) of this process and its children every 250 ms."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            # proportional set size: pages shared by the forked workers are counted once
            total = me.memory_full_info().pss
            for child in me.children(recursive=True):
                try:
                    total += child.memory_full_info().pss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.25)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def use_photos(root: Path, rel_paths: list[str], photos_dir: Path) -> None:
    """Overwrite the example's training images with the real JPEGs of ``photos_dir``, cycled."""
    photos = sorted(p for p in photos_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not photos:
        sys.exit(f"error: {photos_dir}: no .jpg or .jpeg files")
    stamp = root / "photos.txt"
    if stamp.exists() and stamp.read_text() == str(photos_dir.resolve()):
        return
    import shutil
    for i, rel in enumerate(rel_paths):
        shutil.copyfile(photos[i % len(photos)], root / rel)
    stamp.write_text(str(photos_dir.resolve()))


def split_jpegs(split: Path) -> list[bytes]:
    """The JPEG bytes of every sample of a split's shards, in shard order: the plain loop's input."""
    return [s["jpg"] for name in schema.read_sizes(split) for s in read_shard(split / name, BadSamples(1e9))]


def plain_pass(jpegs: list[bytes], cfg: LoaderConfig) -> None:
    """The baseline: decode and augment each JPEG (already in memory) into one reused array, with
    the loader's own code (CpuAugment), on one core."""
    aug = CpuAugment(cfg, random.Random(0))
    out = np.empty((1, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    for data in jpegs:
        aug.into(data, out)


def pil_loop(paths: list[Path]) -> float:
    """Images per CPU-second of the plain loop: read the file, decode it fully with PIL."""
    import io

    from PIL import Image
    t = time.process_time()
    for p in paths:
        Image.open(io.BytesIO(p.read_bytes())).convert("RGB")
    return len(paths) / (time.process_time() - t)


def workers_in_process(split: Path, loader: ShardLoader, cfg: LoaderConfig) -> float:
    """CPU-seconds per image of one epoch of the workers' own code (each worker's StreamDataset:
    tar reading, labels, shuffle buffer, decode, augment, batching) run in this process."""
    from pipeline.loader.worker import StreamDataset
    n, c = 0, time.process_time()
    for plan in loader._plans()[loader.rank]:
        for batch in StreamDataset(split, cfg, [plan], loader.repeat, loader.epoch, loader.rank, sizes=loader.sizes):
            n += len(batch["class_id"])
    return (time.process_time() - c) / max(1, n)


def stream_alone(split: Path, loader: ShardLoader, cfg: LoaderConfig) -> float:
    """CPU-seconds per sample of the workers' sample streams alone (tar members, label checks,
    shuffle buffer, padding, read-ahead; no decode), one epoch, in this process."""
    from pipeline.loader.worker import StreamDataset, WorkerStream
    plans = loader._plans()[loader.rank]
    ds = StreamDataset(split, cfg, plans, loader.repeat, loader.epoch, loader.rank, sizes=loader.sizes)
    n, c = 0, time.process_time()
    for worker in range(len(plans)):
        for _ in WorkerStream(ds, worker, in_worker=False).samples(loader.epoch, plans, BadSamples(1e9)):
            n += 1
    return (time.process_time() - c) / max(1, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=40)
    ap.add_argument("--images-per-class", type=int, default=100)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5, help="loader runs, each between two plain runs")
    ap.add_argument("--epochs", type=int, default=2, help="consecutive loader epochs per timed run")
    ap.add_argument("--shard-count", type=int, default=250, help="samples per shard")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--images", default=None, metavar="DIR", help="real JPEGs to use as the training images")
    ap.add_argument("--read-ahead", type=int, default=LoaderConfig.read_ahead,
                    help="loader.read_ahead: samples a worker draws before decoding them (1: interleaved)")
    args = ap.parse_args()
    setup_logging("WARNING")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_loader_"))
    root, mined, shards = work / "release", work / "mined", work / "shards"
    example_release(root, mined, args.classes, args.images_per_class)

    # shard writer, one process, no re-encoding, each validation mode; the plain PIL loop beside it
    import shutil
    samples = split_samples("train", root, mined)
    if args.images:
        use_photos(root, samples.column("path").to_pylist(), Path(args.images))
    paths = [root / p for p in samples.column("path").to_pylist()]
    writer_rates = {}
    for mode in ("full", "fast", "none"):
        shutil.rmtree(shards, ignore_errors=True)
        t = time.process_time()
        write_part("train", samples, root, shards, ShardConfig(max_count=args.shard_count, validate=mode), 0, 1)
        writer_rates[mode] = samples.num_rows / (time.process_time() - t)
    pil_rate = pil_loop(paths)
    default_mode = ShardConfig().validate
    writer_rate = writer_rates[default_mode]
    merge_split(shards, "train")
    split = shards / "train"
    n = sum(schema.read_sizes(split).values())

    # plain loop: the same decode + augmentation on the same JPEGs, in memory, one core
    cfg = LoaderConfig(batch_size=args.batch, workers=args.workers, image_size=args.image_size,
                       shuffle_buffer=1000, read_ahead=args.read_ahead)
    jpegs = split_jpegs(split)
    loader = ShardLoader(split, cfg)
    # memory in an epoch of its own: reading /proc/*/smaps stalls the workers' page faults
    with PeakRss() as rss:
        for _ in loader:   # also the warm-up epoch: page cache, worker start-up code paths
            pass
    loader.close()
    # this machine's speed drifts by up to 20% within minutes: every loader run is bracketed by
    # two plain runs (P L P L ... P) and compared with their mean; the median ratio is reported

    cpu = {"plain": [], "loader": [], "main": [], "later": []}   # CPU-seconds per image (rusage), beside the wall-clock rates

    def plain() -> float:
        c = time.process_time()
        t = time.perf_counter()
        plain_pass(jpegs, cfg)
        end = time.perf_counter()
        cpu["plain"].append((time.process_time() - c) / len(jpegs))
        return len(jpegs) / (end - t)

    def full_loader() -> tuple[float, float, float | None]:
        # --epochs consecutive epochs from a cold start (the workers forked here, as at the start
        # of a training run); they stream from one epoch into the next as in training
        images = steady_images = 0
        c = time.process_time()
        t = time.perf_counter()
        first, times = None, []
        after_first = None   # (time, images, worker CPU, main CPU) when the first epoch ended
        for epoch in range(args.epochs):
            for batch in loader:
                images += len(batch["class_id"])
                if first is None:   # the run's start: worker fork, shuffle-buffer fill
                    first = time.perf_counter()
                    workers = psutil.Process().children()
                else:
                    steady_images += len(batch["class_id"])
                    times = [w.cpu_times() for w in workers]   # the workers' own, while they live
            if epoch == 0 and args.epochs > 1:
                after_first = (time.perf_counter(), images, sum(x.user + x.system for x in times),
                               time.process_time())
        end = time.perf_counter()
        worker_cpu = sum(x.user + x.system for x in times)
        cpu["main"].append((time.process_time() - c) / images)
        cpu["loader"].append(cpu["main"][-1] + worker_cpu / images)
        later = None
        if after_first is not None:   # the epochs after the first: no fork, fill or first touches
            t1, n1, w1, m1 = after_first
            later = (images - n1) / (end - t1) / args.workers
            cpu["later"].append((worker_cpu - w1 + time.process_time() - m1) / (images - n1))
        loader.close()
        return images / (end - t) / args.workers, steady_images / (end - first) / args.workers, later

    plain_rates, loader_rates, steady_rates, later_rates = [plain()], [], [], []
    for _ in range(args.repeats):
        whole, steady, later = full_loader()
        loader_rates.append(whole)
        steady_rates.append(steady)
        later_rates.append(later)
        plain_rates.append(plain())
    # where the loader's extra CPU goes: its workers' own code run in this process (no fork, no
    # ring), and the sample stream alone, each between two plain runs too
    inproc = []
    for _ in range(args.repeats):
        inproc.append(workers_in_process(split, loader, cfg))
        plain()
    stream_us = min(stream_alone(split, loader, cfg) for _ in range(3)) * 1e6
    around = [(a + b) / 2 for a, b in zip(plain_rates, plain_rates[1:])]
    cpu_around = [(a + b) / 2 for a, b in zip(cpu["plain"], cpu["plain"][1:])]
    ratios = [x / p for x, p in zip(loader_rates, around)]
    steady_ratios = [x / p for x, p in zip(steady_rates, around)]
    med = statistics.median
    ratio, steady_ratio = med(ratios), med(steady_ratios)
    print(f"\n{n} images in {len(schema.read_sizes(split))} shards "
          f"({'real JPEGs of ' + args.images if args.images else 'generated example'}, "
          f"{sum(len(j) for j in jpegs) / len(jpegs) / 1024:.1f} KB mean JPEG), batch {args.batch}, "
          f"{args.image_size}px, read-ahead {args.read_ahead}, {args.workers} worker processes on {os.cpu_count()} cores, "
          f"{args.repeats} loader runs each between two plain runs")
    print(f"shard writer: {writer_rate:.0f} images/s/core with the default --validate {default_mode} "
          f"(goal >= 1000, no re-encoding)")
    print("shard writer per CPU-second by --validate: " + ", ".join(
        f"{m} {r:.0f} ({r / pil_rate:.1f}x the plain PIL loop)" for m, r in writer_rates.items())
        + f"; plain PIL loop (read + full decode) {pil_rate:.0f} images per CPU-second")
    print(f"plain decode+augment loop: {med(plain_rates):.0f} images/s on one core "
          f"(median; {min(plain_rates):.0f}-{max(plain_rates):.0f})")
    print(f"full loader, {args.epochs} whole epochs from a cold start: {med(loader_rates):.0f} images/s per "
          f"worker core (median) -> {ratio:.3f} of the plain loop around it "
          f"(median; {min(ratios):.3f}-{max(ratios):.3f}), overhead {1 - ratio:+.1%} (goal <= 5%)")
    print(f"  the same without the first batch (worker start-up, shuffle-buffer fill): "
          f"{med(steady_rates):.0f} images/s per worker core -> {steady_ratio:.3f} "
          f"({min(steady_ratios):.3f}-{max(steady_ratios):.3f}), overhead {1 - steady_ratio:+.1%}")
    if args.epochs > 1:
        later_ratios = [x / p for x, p in zip(later_rates, around)]
        later_cpu = [p / x for x, p in zip(cpu["later"], cpu_around)]
        print(f"  the epochs after the first (steady state: no fork, shuffle-buffer fill or first page "
              f"touches): {med(later_rates):.0f} images/s per worker core -> {med(later_ratios):.3f} "
              f"({min(later_ratios):.3f}-{max(later_ratios):.3f}), overhead {1 - med(later_ratios):+.1%}; "
              f"CPU per image {med(cpu['later']) * 1e6:.0f} us -> plain / loader {med(later_cpu):.3f} "
              f"({min(later_cpu):.3f}-{max(later_cpu):.3f}), CPU overhead {1 - med(later_cpu):+.1%}")
    cpu_ratios = [p / x for x, p in zip(cpu["loader"], cpu_around)]
    print(f"CPU per image (rusage; less sensitive to other jobs on the machine): plain loop "
          f"{med(cpu['plain']) * 1e6:.0f} us, loader {med(cpu['loader']) * 1e6:.0f} us (workers + main "
          f"process, of which main {med(cpu['main']) * 1e6:.0f} us; fork, shuffle-buffer fill and the "
          f"workers' start on the next epoch included) -> plain / loader {med(cpu_ratios):.3f} "
          f"({min(cpu_ratios):.3f}-{max(cpu_ratios):.3f}), CPU overhead {1 - med(cpu_ratios):+.1%}")
    inproc_ratios = [p / x for x, p in zip(inproc, cpu_around[args.repeats:])]   # the plain runs around each
    print(f"the workers' code in this process (no fork, fresh batch arrays instead of the ring): CPU per image "
          f"{med(inproc) * 1e6:.0f} us -> plain / in-process {med(inproc_ratios):.3f} "
          f"({min(inproc_ratios):.3f}-{max(inproc_ratios):.3f}), CPU overhead {1 - med(inproc_ratios):+.1%}; "
          f"the sample stream alone (tar members, labels, shuffle buffer; no decode): {stream_us:.1f} us per "
          f"sample (best of 3), {stream_us / (med(cpu['plain']) * 1e6):.1%} of the plain loop's image")
    print(f"loader peak memory (PSS, main + workers): {rss.peak / 2**20:.0f} MiB")
    tars = tar_readers([split / name for name in schema.read_sizes(split)])
    print(f"tar reader, members/s (best of 3, page cache warm): ours {tars['ours']:.0f}, tarfile stream "
          f"{tars['tarfile']:.0f} ({tars['ours'] / tars['tarfile']:.1f}x), webdataset tar_file_iterator "
          f"{tars['webdataset']:.0f} ({tars['ours'] / tars['webdataset']:.1f}x)")

    if args.device.startswith("cuda"):
        import torch
        gcfg = LoaderConfig(batch_size=args.batch, workers=args.workers, image_size=args.image_size,
                            decode="gpu")
        gl = ShardLoader(split, gcfg)
        count = 0
        torch.cuda.synchronize()
        t = time.perf_counter()
        for batch in gl:
            out = gpu_decode(batch, args.image_size, args.device)
            count += out.shape[0]
        torch.cuda.synchronize()
        print(f"GPU decode path (nvJPEG + batched roi_align): {count / (time.perf_counter() - t):.0f} images/s")


if __name__ == "__main__":
    main()
