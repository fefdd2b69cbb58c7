"""Training throughput fed by the real loader, against the same step on an in-memory batch.

    python bench/train_throughput.py --model resnet50 --batch 256 [--compile] [--workers N]
        [--images 40000] [--keywords 35000] [--target keywords|weights] [--decode pil|gpu]
        [--steps 100] [--warmup 20] [--image-size 224] [--precision bf16|no] [--workdir DIR]

Synthetic WebVision-scale data (bench/synthetic.py: generated JPEGs with shorter side 256, a
35k-keyword vocabulary, 5000 classes) is written once into --workdir and sharded. One process and
one device (the first GPU, else the CPU), the pretraining trainer's own step
(``Trainer.train_micro_batch``: uint8 batch to the device, colour jitter + normalise there, dense
targets, forward/backward under autocast, SGD step), measured in the same run:
- synthetic: one loader batch kept on the device, stepped again and again (the model's ceiling);
- loader alone: batches from the real loader, no training (what the CPU side delivers);
- real: the real loader feeding the step (epoch boundaries included);
and prints real / synthetic (goal on one H100 with 16 CPU cores: >= 0.95).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from synthetic import make_synthetic  # noqa: E402
from pipeline.loader import DevicePrefetcher, gpu_decode  # noqa: E402
from pretrain.config import PretrainConfig  # noqa: E402
from pretrain.trainer import Trainer  # noqa: E402
from webtag.config import load_config  # noqa: E402
from webtag.logs import setup_logging  # noqa: E402


def fresh_epoch(loader):
    """Batches of a new epoch, then of the next ones: each phase starts at an epoch's start
    (worker start-up and shuffle-buffer fill fall in its warm-up steps)."""
    loader.set_epoch(loader.epoch + 1)
    while True:
        yield from loader


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--images", type=int, default=40000)
    ap.add_argument("--classes", type=int, default=5000)
    ap.add_argument("--keywords", type=int, default=35000)
    ap.add_argument("--target", choices=["keywords", "weights"], default="keywords")
    ap.add_argument("--decode", choices=["pil", "torchvision", "gpu"], default="pil")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--precision", choices=["bf16", "no"], default=None, help="default: bf16 on a GPU, no on CPU")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-mode", default=None, help="e.g. reduce-overhead, max-autotune")
    ap.add_argument("--worker-nice", type=int, default=0, help="niceness increment of the loader workers")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--shuffle-buffer", type=int, default=2000)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    setup_logging("WARNING")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_train_"))
    t = time.perf_counter()
    data = make_synthetic(work / f"data-{args.images}-{args.classes}-{args.keywords}", images=args.images,
                          classes=args.classes, keywords=args.keywords)
    print(f"data ready in {time.perf_counter() - t:.0f} s: {data['shards']}", flush=True)
    cuda = torch.cuda.is_available()
    precision = args.precision or ("bf16" if cuda else "no")
    overrides = [
        f"data.shards={data['shards']}", f"data.labels={data['mined']}", f"data.target={args.target}",
        "data.holdout_shards=0", f"model.name={args.model}", f"model.compile={str(args.compile).lower()}",
        f"model.channels_last={str(not args.no_channels_last).lower()}",
        f"model.compile_mode={args.compile_mode or 'null'}", f"loader.worker_nice={args.worker_nice}",
        f"loss.name={'soft_ce' if args.target == 'keywords' else 'weighted_ce'}",
        "optim.name=sgd", "optim.lr=0.01", "optim.schedule=constant",
        f"loader.batch_size={args.batch}", f"loader.workers={args.workers}", f"loader.image_size={args.image_size}",
        f"loader.decode={args.decode}", f"loader.shuffle_buffer={args.shuffle_buffer}",
        f"loader.pin_memory={str(cuda).lower()}", "loader.sampling=instance",
        f"train.output_dir={work / 'run'}", f"train.mixed_precision={precision}", "train.max_steps=1000000",
        "train.progress=false", "train.tensorboard=false",
    ]
    trainer = Trainer(load_config(PretrainConfig, None, overrides))
    device = trainer.device
    trainer.model.train()

    def step(batch):
        trainer.train_micro_batch(batch)

    # synthetic: one real batch, resident on the device
    batch = next(iter(DevicePrefetcher(trainer.loader, device)))
    if batch.get("image") is None:   # decode=gpu: the ceiling is the step on decoded images
        batch["image"] = gpu_decode(batch, args.image_size, device)

    def synthetic() -> float:
        for _ in range(args.warmup):
            step(batch)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step(batch)
        sync(device)
        return args.steps * args.batch / (time.perf_counter() - t0)

    synth = [synthetic()]
    print(f"synthetic batch: {synth[0]:.0f} images/s", flush=True)

    # the loader alone
    per_epoch = len(trainer.loader)
    if per_epoch < args.warmup + args.steps:
        print(f"note: an epoch is {per_epoch} batches, fewer than warm-up + steps: the timed phases "
              "include epoch boundaries (use --images to avoid them)", flush=True)
    it = fresh_epoch(trainer.loader)
    for _ in range(args.warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        next(it)
    loader_alone = args.steps * args.batch / (time.perf_counter() - t0)
    print(f"loader alone: {loader_alone:.0f} images/s ({args.workers} workers)", flush=True)

    # the real thing
    it = iter(DevicePrefetcher(fresh_epoch(trainer.loader), device))   # the trainer's own feed (side-stream copies)
    for _ in range(args.warmup):
        step(next(it))
    sync(device)
    trainer._waited = 0.0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(next(it))
    sync(device)
    waited = trainer._waited
    elapsed = time.perf_counter() - t0
    real = args.steps * args.batch / elapsed
    synth.append(synthetic())   # again after: the device's clocks drift; take the better one
    ceiling = max(synth)
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({os.cpu_count()} cores)"
    print(f"\n{args.model}, batch {args.batch}, {args.image_size}px, {precision}, "
          f"{('compiled ' + (args.compile_mode or 'default')) if args.compile else 'eager'}, "
          f"worker nice +{args.worker_nice}, "
          f"{'channels_last' if not args.no_channels_last else 'contiguous'}, head {trainer.info.num_outputs} "
          f"({args.target}), decode {args.decode}, {args.workers} loader workers on {os.cpu_count()} cores, {name}")
    print(f"synthetic in-memory batch: {ceiling:.0f} images/s (runs: {', '.join(f'{s:.0f}' for s in synth)})")
    print(f"loader alone:              {loader_alone:.0f} images/s")
    print(f"real loader + step:        {real:.0f} images/s, waiting for data {waited / elapsed:.1%} of the time")
    print(f"ratio real / synthetic:    {real / ceiling:.3f} (goal >= 0.95 on one H100 with 16 cores)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": args.model, "batch": args.batch, "device": name, "compile": args.compile,
            "precision": precision, "workers": args.workers, "decode": args.decode, "synthetic": synth,
            "loader_alone": loader_alone, "real": real, "data_wait": waited / elapsed, "ratio": real / ceiling}, indent=1))


if __name__ == "__main__":
    main()
