"""Accounting of lost samples in a worker: counted in samples, logged at a bounded rate, never fatal.

What counts is samples lost, not events: a shard's manifest says how many samples it holds, so at
the end of a shard ``expected - delivered`` is what it lost, however the damage looked (a broken
tar header, a truncated member, an empty or missing file, garbage between members, labels that do
not parse). A sample whose JPEG does not decode is lost too (counted where it is decoded). The
damage itself (:meth:`BadSamples.note`) is only remembered for the shard's one log line.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger("pipeline.loader")


class BadSamples:
    """Samples lost (``count``), and log lines at most once per ``every_s`` seconds: one line per
    damaged shard (its name, samples lost, the first problem seen), the ones held back by the rate
    limit summed up in the next line."""

    def __init__(self, every_s: float):
        self.every_s, self.count, self.last_log = every_s, 0, -1e18
        self.reported = 0                 # the count already handed on with a batch
        self.unlogged = self.unlogged_where = 0
        self.problems: list[str] = []     # damage seen in the shard being read (first few kept)
        self.problem_count = 0

    def note(self, where: str, why: str) -> None:
        """Damage seen while reading (no sample counted by itself: :meth:`shard_end` does that)."""
        self.problem_count += 1
        if len(self.problems) < 3:
            self.problems.append(f"{where}: {why}")

    def lost(self, where: str, n: int, why: str) -> None:
        """``n`` samples of ``where`` will not be delivered."""
        if n > 0:
            self.count += n
            self._report(where, n, why)

    def _report(self, where: str, n: int, why: str) -> None:
        self.unlogged += n
        self.unlogged_where += 1
        now = time.monotonic()
        if now - self.last_log >= self.every_s:
            more = self.unlogged_where - 1
            log.warning("%s: %d sample(s) lost (%s)%s", where, n, why,
                        f"; {self.unlogged - n} more in {more} other place(s) since the last report" if more else "")
            self.last_log, self.unlogged, self.unlogged_where = now, 0, 0

    def shard_end(self, shard: str, expected: int | None, delivered: int, skipped: int = 0) -> int:
        """A shard was read to its end, ``delivered`` complete samples: count what it lost against
        ``expected`` (its manifest count), or, with no count known, the ``skipped`` samples seen
        incomplete. A damaged shard gets one log line, even if it lost nothing. Returns the
        samples lost; the shard's problems are forgotten."""
        lost = skipped if expected is None else max(0, expected - delivered)
        if expected is not None and delivered > expected:
            self.note(shard, f"{delivered} samples where the manifest lists {expected}")
        if lost or self.problems:
            why = "; ".join(self.problems) or "no problem seen: missing members"
            if self.problem_count > len(self.problems):
                why += f"; {self.problem_count - len(self.problems)} more problem(s)"
            of = "" if expected is None else f" of {expected}"
            self.count += lost
            self._report(shard, lost, f"{delivered}{of} delivered; {why}")
        self.problems, self.problem_count = [], 0
        return lost

    def since_last(self) -> int:
        """Samples counted since the previous call (what one batch reports)."""
        n, self.reported = self.count - self.reported, self.count
        return n
