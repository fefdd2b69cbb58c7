"""The streaming loader's own work, counted in instructions: a figure the machine's noise does not move.

    python bench/loader_instructions.py --workdir DIR [--workers 1] [--batch 64] [--image-size 224] \
        [--passes 1 3] [--jobs 2] [--cache-sim]

DIR is a folder bench/loader.py built (its shards in DIR/shards/train: generated JPEGs, or real
ones with bench/loader.py --images). Each of the plain decode + augment loop (the JPEGs in memory,
one reused array: bench/loader.py's baseline) and the full loader (tar reading, shuffle buffer,
decode, RandomResizedCrop, flip, batches through the ring, worker processes) runs under valgrind's
callgrind twice, over a few and over more passes (``--passes``); the difference between the two
runs, per image, is the instructions an image costs once a run is going (process start, imports,
worker fork and the shuffle buffer's first fill cancel out). The loader's count is its main
process and its workers together.

Why instructions: on a shared 2-core VM the same plain loop runs 15% faster or slower from one
second to the next, more than the 5% the loader may add; callgrind counts the same instructions
for the same binary and input whatever else the machine does, so the runs go two at a time. What
it leaves out, and the wall-clock benchmark keeps: the kernel's work (page faults, system
calls), cache misses and memory bandwidth, and any waiting.

``--cache-sim`` counts some of what instructions leave out: the same runs with callgrind's cache
model (``--cache-sim=yes``; ~29 min instead of ~6 on 1,000 generated images here), which reports
each process's misses of the first data cache (D1) and of the last level (LL, whose misses go to
memory) per image. It simulates each process alone on caches of the sizes the CPU reports (the line
printed names them: a VM's CPU may report odd ones, check them), two levels only (a middle L2 is
not modelled: LL is the L3 where there is one), with no prefetcher and no cache shared between
processes: a figure to compare plain loop and loader by, not a count of what the hardware did.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VALGRIND = "valgrind"


def fail(message: str) -> None:
    """Bad arguments or set-up: one line on stderr, exit 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def callgrind_events(folder: Path) -> dict[int, dict[str, int]]:
    """Each process's totals by event (pid -> {"Ir": ..., "D1mr": ...}) from the ``cg.<pid>``
    files callgrind wrote in ``folder``: its ``events:`` line names the columns of its
    ``summary:`` (or ``totals:``) line."""
    out = {}
    for f in sorted(folder.glob("cg.*")):
        names, total = ["Ir"], None
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("events:"):
                    names = line.split()[1:]
                elif line.startswith(("totals:", "summary:")):
                    total = [int(v) for v in line.split()[1:]]
        if total is None:
            raise ValueError(f"{f}: no 'totals:' or 'summary:' line (callgrind did not finish)")
        out[int(f.name.split(".", 1)[1])] = dict(zip(names, total + [0] * (len(names) - len(total))))
    return out


# simulated misses (callgrind --cache-sim=yes): the first-level data cache, and the last level
# (instruction and data) whose misses go to memory
MISSES = {"D1": ("D1mr", "D1mw"), "LL": ("ILmr", "DLmr", "DLmw")}


def child(mode: str, split: Path, passes: int, workers: int, batch: int, size: int) -> int:
    """Run ``passes`` passes of the plain loop or epochs of the loader; returns the images done."""
    from loader import plain_pass, split_jpegs    # bench/loader.py: the same baseline as the wall-clock figures
    from pipeline.loader import LoaderConfig, ShardLoader

    cfg = LoaderConfig(batch_size=batch, workers=workers, image_size=size, shuffle_buffer=1000)
    if mode == "plain":
        jpegs = split_jpegs(split)
        for _ in range(passes):
            plain_pass(jpegs, cfg)
        return passes * len(jpegs)
    loader = ShardLoader(split, cfg)
    images = 0
    for _ in range(passes):
        for b in loader:
            images += len(b["class_id"])
    loader.close()
    return images


def counted(mode: str, passes: int, args, split: Path) -> tuple[int, dict, dict, dict]:
    """(images, event totals of the top process, event totals of its children summed, the cache
    model callgrind reported on its stderr) of one run."""
    folder = Path(tempfile.mkdtemp(prefix=f"cg_{mode}_{passes}_", dir=args.tmp))
    cmd = [VALGRIND, "--tool=callgrind", f"--callgrind-out-file={folder}/cg.%p", "--dump-instr=no",
           *(["--cache-sim=yes"] if args.cache_sim else []),
           sys.executable, __file__, "--child", mode, "--split", str(split), "--child-passes", str(passes),
           "--workers", str(args.workers), "--batch", str(args.batch), "--image-size", str(args.image_size)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{mode}, {passes} passes: exit {proc.returncode}\n{err[-2000:]}")
    events = callgrind_events(folder)
    shutil.rmtree(folder, ignore_errors=True)
    model = dict(re.findall(r"==\d+==\s+(I1|D1|LL): ([^\n]+)", err))   # the cache model it simulated, if any
    images = int(out.strip().splitlines()[-1])
    top = events.pop(proc.pid)
    kids = {}
    for ev in events.values():
        for name, v in ev.items():
            kids[name] = kids.get(name, 0) + v
    return images, top, kids, model


def per_image(got: dict, mode: str, few: int, more: int, names) -> tuple[float, float, float]:
    """(whole run, top process, children) per image of the events ``names`` summed: the difference
    of the ``more``-pass run and the ``few``-pass run, divided by the images between them."""
    (n1, top1, kids1, _), (n2, top2, kids2, _) = got[(mode, few)], got[(mode, more)]
    top = sum(top2.get(k, 0) - top1.get(k, 0) for k in names) / (n2 - n1)
    kids = sum(kids2.get(k, 0) - kids1.get(k, 0) for k in names) / (n2 - n1)
    return top + kids, top, kids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", help="a folder bench/loader.py built (shards in WORKDIR/shards/train)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--passes", type=int, nargs=2, default=[1, 3], metavar=("FEW", "MORE"))
    ap.add_argument("--jobs", type=int, default=2, help="valgrind runs at a time")
    ap.add_argument("--tmp", default=None, help="where callgrind's files go (deleted after each run)")
    ap.add_argument("--cache-sim", action="store_true",
                    help="also count simulated cache misses per image (callgrind --cache-sim=yes; slower)")
    ap.add_argument("--child", choices=["plain", "loader"], help=argparse.SUPPRESS)
    ap.add_argument("--split", help=argparse.SUPPRESS)
    ap.add_argument("--child-passes", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(child(args.child, Path(args.split), args.child_passes, args.workers, args.batch, args.image_size))
        return
    if not args.workdir:
        fail("--workdir DIR is required (a folder bench/loader.py built)")
    split = Path(args.workdir) / "shards" / "train"
    if not (split / "sizes.json").is_file() and not any(split.glob("*.tar")):
        fail(f"{split}: no shards; run bench/loader.py --workdir {args.workdir} first")
    if shutil.which(VALGRIND) is None:
        fail("valgrind is not installed (Debian: apt-get install valgrind)")
    few, more = args.passes
    if not 0 < few < more:
        fail(f"--passes {few} {more}: need 0 < FEW < MORE")
    runs = [(m, p) for m in ("plain", "loader") for p in (few, more)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        got = dict(zip(runs, pool.map(lambda r: counted(r[0], r[1], args, split), runs)))
    per = {mode: per_image(got, mode, few, more, ["Ir"]) for mode in ("plain", "loader")}
    plain, loader = per["plain"][0], per["loader"][0]
    images = got[("loader", more)][0] - got[("loader", few)][0]
    print(f"instructions per image, callgrind (user space only; the difference of {few} and {more} passes, "
          f"{images} loader images; {args.workers} worker(s), batch {args.batch}, {args.image_size}px, "
          f"{split}):")
    print(f"  plain decode+augment loop: {plain / 1e6:.3f} M")
    print(f"  loader: {loader / 1e6:.3f} M (workers {per['loader'][2] / 1e6:.3f} M, main process "
          f"{per['loader'][1] / 1e6:.3f} M) -> plain / loader {plain / loader:.3f}, overhead "
          f"{loader / plain - 1:+.1%} (goal <= 5%); the workers alone {per['loader'][2] / plain - 1:+.1%}")
    if args.cache_sim:
        caches = {k: v for run in got.values() for k, v in run[3].items()}
        model = "; ".join(f"{k} {v}" for k, v in sorted(caches.items())) or "not reported"
        print(f"simulated cache misses per image (callgrind --cache-sim=yes, each process alone; its model: {model}):")
        for level, names in MISSES.items():
            misses = {mode: per_image(got, mode, few, more, names) for mode in ("plain", "loader")}
            p, (lo, top, kids) = misses["plain"][0], misses["loader"]
            print(f"  {level}: plain loop {p:,.0f}, loader {lo:,.0f} (workers {kids:,.0f}, main process {top:,.0f})"
                  + (f" -> {lo / p - 1:+.1%}" if p >= 1 else ""))


if __name__ == "__main__":
    main()
