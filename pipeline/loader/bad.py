"""Accounting of corrupt samples in a worker: counted, and logged at a bounded rate (never fatal)."""
from __future__ import annotations

import logging
import time

log = logging.getLogger("pipeline.loader")


class BadSamples:
    """Counts corrupt samples and logs them at most once per ``every_s`` seconds."""

    def __init__(self, every_s: float):
        self.every_s, self.count, self.last_log, self.unlogged = every_s, 0, -1e18, 0
        self.reported = 0                 # the count already handed on with a batch

    def add(self, where: str, why: str) -> None:
        self.count += 1
        self.unlogged += 1
        now = time.monotonic()
        if now - self.last_log >= self.every_s:
            log.warning("skipped %d corrupt sample(s) since the last report; latest: %s: %s",
                        self.unlogged, where, why)
            self.last_log, self.unlogged = now, 0

    def since_last(self) -> int:
        """Samples counted since the previous call (what one batch reports)."""
        n, self.reported = self.count - self.reported, self.count
        return n
