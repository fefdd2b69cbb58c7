"""Run the whole stage on one machine: map steps in a process pool, reduce steps in-process."""
from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from .config import TextMiningConfig
from .count import count_part
from .merge import merge
from .tag import tag_part
from .vocabulary import build_vocabulary

log = logging.getLogger(__name__)


def _limit_threads(n: int) -> None:
    """Worker-process initializer: n math-library threads each, so workers do not oversubscribe."""
    os.environ["OMP_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def _map(fn, root, out, cfg, num_parts: int, workers: int, desc: str) -> None:
    if workers <= 1:
        for part in range(num_parts):
            fn(root, out, cfg, part, num_parts)
        return
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    procs = min(workers, num_parts)
    threads = max(1, (os.cpu_count() or 1) // procs)
    with ProcessPoolExecutor(max_workers=procs, mp_context=ctx, initializer=_limit_threads,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(fn, root, out, cfg, part, num_parts) for part in range(num_parts)]
        try:
            for fut in tqdm(as_completed(futures), total=num_parts, desc=desc, unit="part"):
                fut.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def run_all(root: str | Path, out: str | Path, cfg: TextMiningConfig, workers: int = 1,
            num_parts: int | None = None) -> dict:
    """count (map) -> vocabulary (reduce) -> tag (map) -> merge; finished parts are skipped."""
    workers = max(1, workers)
    num_parts = num_parts or workers
    timings = {}
    t = time.perf_counter()
    _map(count_part, root, out, cfg, num_parts, workers, "count")
    timings["count"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    build_vocabulary(root, out, cfg)
    timings["vocabulary"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    _map(tag_part, root, out, cfg, num_parts, workers, "tag")
    timings["tag"] = round(time.perf_counter() - t, 3)
    timings["workers"] = workers
    return merge(root, out, cfg, timings)
