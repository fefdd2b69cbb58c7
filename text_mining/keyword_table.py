"""The count step's keyword bookkeeping, a batch of records at a time, in Arrow and numpy.

A batch is the records' items (their tokens, or their keywords when the part-of-speech filter
needs context) as one flat list with each record's length. :meth:`KeywordTable.add` gives each
record's distinct keywords in order of first occurrence and how often each occurs (the
``keywords`` and ``keyword_counts`` list columns of ``extract.parquet``) and adds them to the
part's occurrences and images per keyword (``counts.parquet``, :meth:`KeywordTable.table`).

Why not a Python loop per token: with a dictionary lookup, a ``Counter`` and two lists per
record, mapping tokens to keywords and counting them was 71 of the 145 us of CPU a realistic
record cost in the count step (100k records, 3.1M tokens, 470k distinct as written). Web text's
long tail makes the token cache large (hundreds of thousands of entries), and a lookup per
occurrence in it misses the CPU caches. Here Arrow's hash table finds a batch's distinct tokens,
so Python decides each distinct token of a batch once, and numpy does the rest.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

COUNTS_SCHEMA = pa.schema([("keyword", pa.string()), ("count", pa.int64()), ("df", pa.int64())])


class KeywordTable:
    """Keyword ids in order of first appearance, with the occurrences and images of each."""

    def __init__(self):
        self._ids: dict[str, int] = {}             # keyword -> id, for the lookups
        self.words = pa.array([], pa.string())     # the keywords by id (one copy of the strings)
        self.counts = np.zeros((2, 0), np.int64)   # per id: occurrences, images

    @property
    def occurrences(self) -> np.ndarray:
        return self.counts[0]

    @property
    def images(self) -> np.ndarray:
        return self.counts[1]

    def _keyword_ids(self, keywords: list[str | None]) -> np.ndarray:
        """The id of each keyword (-1 for "" or None), new keywords added."""
        ids = self._ids
        first = len(ids)
        new: list[str] = []
        out = np.empty(len(keywords), np.int64)
        for i, kw in enumerate(keywords):
            if not kw:
                out[i] = -1
                continue
            j = ids.get(kw)
            if j is None:
                j = ids[kw] = first + len(new)
                new.append(kw)
            out[i] = j
        if new:
            self.words = pa.concat_arrays([self.words, pa.array(new, pa.string())])
            self.counts = np.concatenate([self.counts, np.zeros((2, len(new)), np.int64)], axis=1)
        return out

    def add(self, items: list[str], lengths: list[int],
            resolve: Callable[[list[str]], list[str | None]]) -> tuple[pa.Array, pa.Array]:
        """(keywords, keyword_counts) list arrays of a batch of ``len(lengths)`` records whose
        items are ``items`` (record after record); ``resolve`` maps distinct items to their
        keyword ("" or None: none). A record's keywords are in order of first occurrence."""
        n = len(lengths)
        if items:
            enc = pa.array(items, pa.string()).dictionary_encode()
            lookup = self._keyword_ids(resolve(enc.dictionary.to_pylist()))
            kw = lookup[enc.indices.to_numpy()]
        else:
            kw = np.zeros(0, np.int64)
        rec = np.repeat(np.arange(n, dtype=np.int64), np.asarray(lengths, dtype=np.int64))
        keep = kw >= 0
        rec, kw = rec[keep], kw[keep]
        width = max(1, len(self.words))
        pairs, first, counts = np.unique(rec * width + kw, return_index=True, return_counts=True)
        order = np.argsort(first)   # by record, then by first occurrence within it
        pairs, counts = pairs[order], counts[order]
        rec_of, kw_of = pairs // width, pairs % width
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(np.bincount(rec_of, minlength=n), out=offsets[1:])
        self.counts[0] += np.bincount(kw_of, weights=counts, minlength=len(self.words)).astype(np.int64)
        self.counts[1] += np.bincount(kw_of, minlength=len(self.words))
        offsets_arr = pa.array(offsets, pa.int32())
        keywords = pa.ListArray.from_arrays(offsets_arr, self.words.take(pa.array(kw_of, pa.int64())))
        keyword_counts = pa.ListArray.from_arrays(offsets_arr, pa.array(counts.astype(np.int32), pa.int32()))
        return keywords, keyword_counts

    def table(self) -> pa.Table:
        """keyword (sorted), count (occurrences), df (images) of every keyword seen. (Arrow sorts
        strings by their UTF-8 bytes: the order of their code points, as Python's sorted.)"""
        order = pc.sort_indices(self.words).to_numpy()
        return pa.table({"keyword": self.words.take(pa.array(order)),
                         "count": self.occurrences[order], "df": self.images[order]}, schema=COUNTS_SCHEMA)

    def total_occurrences(self) -> int:
        return int(self.occurrences.sum())
