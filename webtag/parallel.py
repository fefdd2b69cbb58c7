"""The independent parts of a map step: which slice of the work each part does (``part_range``),
and running them on one machine, in-process or in a process pool (``run_parts``).

The pool's workers die with the process that started them: a SIGKILL of the main process (the
OOM killer, ``kill -9``, a node's job teardown) would otherwise leave them running with parent 1,
holding memory, the output's run lock (``webtag.lock``) and the caller's pipes, and finishing parts
behind the back of a rerun. On Linux each worker asks the kernel for SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), then checks that the parent is still the process that forked it
(one that died before the ``prctl`` would go unnoticed). The signal follows the death of the
parent *thread*: ``run_parts`` forks the workers from the thread that calls it, and that thread
waits in it for the pool. Elsewhere the workers end when they find their call queue broken.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
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


PR_SET_PDEATHSIG = 1   # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """In a forked child: SIGKILL when the parent dies (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:   # the parent died before the prctl: nobody would signal us
        os._exit(1)


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def limit_threads(n: int) -> None:
    """At most ``n`` threads for every math library of this process: the environment variables
    for libraries not loaded yet (read when they load), and threadpoolctl for the BLAS and OpenMP
    pools already loaded (a fork inherits the parent's pool sizes), torch and faiss as well."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=n)
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency of webtag
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(n)


def threads_per_worker(workers: int) -> int:
    """The cores each of ``workers`` processes may use: cores / workers, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _init_worker(n: int, parent: int) -> None:
    """Worker-process initializer: die with the parent; n math-library threads each (cores /
    workers), so that workers do not oversubscribe and a worker is what one core's share does."""
    die_with_parent(parent)
    limit_threads(n)


def run_parts(fn: Callable, jobs: Sequence[tuple], workers: int, desc: str) -> list:
    """``fn(*job)`` for every job, in order in this process when ``workers <= 1``, else in
    ``workers`` forked processes (progress bar over finished jobs). The first failure cancels
    the jobs not started yet and is raised. Returns the results in job order."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    procs = min(workers, len(jobs))
    threads = threads_per_worker(procs)
    with ProcessPoolExecutor(max_workers=procs, mp_context=ctx, initializer=_init_worker,
                             initargs=(threads, os.getpid())) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        try:
            for fut in tqdm(as_completed(futures), total=len(jobs), desc=desc, unit="part"):
                fut.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return [f.result() for f in futures]
