"""Out of core for the reduce steps, bounded by ``reduce.memory_mb``: how many records fit the
budget (:func:`budget_rows`), and a stream of record batches split into hash partitions spilled to
Parquet files and read back one partition at a time (:class:`HashPartitions`), so that a
computation keyed by one column (duplicate keys) holds one partition, not the whole stream.

A partition keeps the stream's order; with one partition nothing is written to disk (the batches
are held, as the in-memory path would hold them).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

MB = 1 << 20


def budget_rows(memory_mb: int, row_bytes: int) -> int:
    """Rows of ``row_bytes`` (their in-memory cost, measured) that fit ``memory_mb``; at least 1."""
    return max(1, int(memory_mb) * MB // max(1, int(row_bytes)))


def partitions_for(rows: int, memory_mb: int, row_bytes: int) -> int:
    """The number of hash partitions that brings ``rows`` under the budget (1: in memory)."""
    return max(1, -(-int(rows) // budget_rows(memory_mb, row_bytes)))


def hash_column(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A deterministic 64-bit hash of each value (pandas' hash_array: no per-process salt)."""
    return pd.util.hash_array(np.asarray(values.to_numpy(zero_copy_only=False), dtype=object))


class HashPartitions:
    """``n`` partitions of a stream of record batches by a hash of ``column``: ``add`` each batch,
    then iterate over the partitions (one ``pa.Table`` each, in stream order within it).
    ``folder``: where the spill files go (a temporary folder inside it, removed on close)."""

    def __init__(self, n: int, column: str, schema: pa.Schema, folder: str | Path):
        self.n, self.column, self.schema = n, column, schema
        self._held: list[pa.RecordBatch] = []
        self._dir = None
        self._writers = []
        if n > 1:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix=".spill-", dir=folder))
            self._writers = [pq.ParquetWriter(self._dir / f"{i:05d}.parquet", schema) for i in range(n)]

    def add(self, batch: pa.RecordBatch) -> None:
        if self.n == 1:
            self._held.append(batch)
            return
        bucket = (hash_column(batch.column(self.column)) % np.uint64(self.n)).astype(np.int64)
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(self.n + 1))
        table = pa.Table.from_batches([batch]).take(pa.array(order))
        for i in range(self.n):
            if bounds[i + 1] > bounds[i]:
                self._writers[i].write_table(table.slice(bounds[i], bounds[i + 1] - bounds[i]))

    def __iter__(self):
        if self.n == 1:
            held, self._held = self._held, []
            yield pa.Table.from_batches(held, schema=self.schema)
            return
        for w in self._writers:
            w.close()
        for i in range(self.n):
            path = self._dir / f"{i:05d}.parquet"
            table = pq.read_table(path)
            path.unlink()
            yield table

    def close(self) -> None:
        for w in self._writers:
            try:
                w.close()
            except Exception:  # pragma: no cover - already closed
                pass
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "HashPartitions":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OrderStatistics:
    """Exact ``np.percentile`` (linear) of non-negative values that float32 holds exactly (the
    label weights), in two passes over the data with two 65,536-bin histograms of their float32
    bits, instead of holding every value: ``add`` each chunk in pass 1, ``need(qs)``, ``refine``
    each chunk in pass 2, then ``percentile(q)``. ``exact`` is False when a value is negative or
    not a float32 (the caller then holds the values)."""

    def __init__(self):
        self.high = np.zeros(1 << 16, np.int64)
        self.n = 0
        self.exact = True
        self.low: dict[int, np.ndarray] = {}

    @staticmethod
    def _bits(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64).astype(np.float32).view(np.uint32)

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if len(x) and (np.any(x < 0) or np.any(x.astype(np.float32).astype(np.float64) != x)):
            self.exact = False
        self.high += np.bincount(self._bits(x) >> 16, minlength=1 << 16)
        self.n += len(x)

    def _index(self, q: float) -> tuple[float, int, int]:
        virtual = (self.n - 1) * (np.float64(q) / 100)   # numpy's "linear" virtual index
        lo = int(np.floor(virtual))
        return virtual, lo, min(lo + 1, self.n - 1)

    def need(self, qs) -> None:
        """The high-bit bins that hold the ranks the percentiles ``qs`` interpolate between."""
        self._cum = np.cumsum(self.high)
        for q in qs:
            _, lo, hi = self._index(q)
            for rank in (lo, hi):
                self.low.setdefault(int(np.searchsorted(self._cum, rank, side="right")), np.zeros(1 << 16, np.int64))

    def refine(self, x: np.ndarray) -> None:
        bits = self._bits(x)
        high = bits >> 16
        for b, counts in self.low.items():
            counts += np.bincount(bits[high == b] & 0xFFFF, minlength=1 << 16)

    def value(self, rank: int) -> float:
        b = int(np.searchsorted(self._cum, rank, side="right"))
        within = rank - (int(self._cum[b - 1]) if b else 0)
        low = int(np.searchsorted(np.cumsum(self.low[b]), within, side="right"))
        return float(np.uint32((b << 16) | low).view(np.float32))

    def percentile(self, q: float) -> float:
        virtual, lo, hi = self._index(q)
        a, b = np.float64(self.value(lo)), np.float64(self.value(hi))
        t = virtual - np.floor(virtual)
        diff = b - a                                     # numpy's _lerp, to the last bit
        return float(b - diff * (1 - t) if t >= 0.5 else a + diff * t)
