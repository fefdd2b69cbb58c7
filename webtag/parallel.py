"""The independent parts of a map step: which slice of the work each part does (``part_range``),
and running them on one machine, in-process or in a process pool (``run_parts``)."""
from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Sequence

from tqdm import tqdm


def part_range(n: int, part: int, num_parts: int) -> tuple[int, int]:
    """The contiguous slice ``[lo, hi)`` of ``n`` items that part ``part`` of ``num_parts`` does:
    the parts partition ``range(n)`` in order, their sizes differ by at most one."""
    if num_parts < 1 or not 0 <= part < num_parts:
        raise ValueError(f"part {part} is not in 0..{num_parts - 1}")
    return n * part // num_parts, n * (part + 1) // num_parts


def _limit_threads(n: int) -> None:
    """Worker-process initializer: n math-library threads each, so workers do not oversubscribe."""
    os.environ["OMP_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def run_parts(fn: Callable, jobs: Sequence[tuple], workers: int, desc: str) -> list:
    """``fn(*job)`` for every job, in order in this process when ``workers <= 1``, else in
    ``workers`` forked processes (progress bar over finished jobs). The first failure cancels
    the jobs not started yet and is raised. Returns the results in job order."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    procs = min(workers, len(jobs))
    threads = max(1, (os.cpu_count() or 1) // procs)
    with ProcessPoolExecutor(max_workers=procs, mp_context=ctx, initializer=_limit_threads,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        try:
            for fut in tqdm(as_completed(futures), total=len(jobs), desc=desc, unit="part"):
                fut.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return [f.result() for f in futures]
