"""Run the whole stage on one machine: map steps in a process pool, reduce steps in-process."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from webtag.parallel import run_parts

from .config import TextMiningConfig
from .count import count_part
from .merge import merge
from .tag import tag_part
from .vocabulary import build_vocabulary

log = logging.getLogger(__name__)


def _map(fn, root, out, cfg, num_parts: int, workers: int, desc: str) -> None:
    run_parts(fn, [(root, out, cfg, part, num_parts) for part in range(num_parts)], workers, desc)


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
