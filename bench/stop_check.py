"""What the per-step stop check costs: optimizer steps per second with ``train.stop_check_every=1``
(the default) against ``0`` (checks at log points only), on the same processes in the same run.

    python bench/stop_check.py [--processes 2] [--steps 200] [--rounds 5] [--width 256] [--batch 32]

``--processes`` CPU processes (gloo) are started with an Accelerate ``Accelerator`` each, a small
MLP prepared by it (DDP: one gradient all-reduce per step), SGD; after every optimizer step the
trainer's own :class:`pretrain.control.StepStopCheck` is called (every=1: its asynchronous
all-reduce of the stop flag on its own gloo group, read one check later; every=0: nothing).
The two settings alternate, ``--rounds`` times each, ``--steps`` steps a round (after 20 warm-up
steps); the best round of each is kept. Prints one JSON line: steps/s of both and
``with_check / without`` (1.0: free). With one process the check is a look at a Python flag.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_rank(rank: int, world: int, port: int, args, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from accelerate import Accelerator

    from pretrain.control import StepStopCheck, StopRequest

    acc = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(args.width, args.width), torch.nn.ReLU(),
                                torch.nn.Linear(args.width, args.width))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    model, opt = acc.prepare(model, opt)
    x = torch.randn(args.batch, args.width)
    stop = StopRequest()
    checks = {every: StepStopCheck(acc, stop, every) for every in (1, 0)}   # groups: same order on all ranks

    def steps(every: int, n: int) -> float:
        check = checks[every]
        acc.wait_for_everyone()
        t0 = time.perf_counter()
        for step in range(1, n + 1):
            loss = model(x).square().mean()
            acc.backward(loss)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if check(step):
                raise RuntimeError("no stop was asked for")
        check.close()
        acc.wait_for_everyone()
        return n / (time.perf_counter() - t0)

    best = {1: 0.0, 0: 0.0}
    for every in (1, 0):
        steps(every, 20)   # warm-up
    for _ in range(args.rounds):
        for every in (1, 0):
            best[every] = max(best[every], steps(every, args.steps))
    if rank == 0:
        out.put(best)
    acc.end_training()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    port = free_port()
    procs = [ctx.Process(target=run_rank, args=(r, args.processes, port, args, out)) for r in range(args.processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs) or out.empty():
        sys.exit(f"a rank failed: exit codes {[p.exitcode for p in procs]}")
    best = out.get()
    print(json.dumps({"processes": args.processes, "steps_per_round": args.steps, "rounds": args.rounds,
                      "width": args.width, "batch": args.batch,
                      "steps_per_s_check_every_1": round(best[1], 1), "steps_per_s_check_every_0": round(best[0], 1),
                      "ratio": round(best[1] / best[0], 3)}))


if __name__ == "__main__":
    main()
