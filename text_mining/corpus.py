"""The word2vec training corpus of the vocabulary step: which images' sentences it holds, written
once as a text file that gensim trains on in its compiled ``corpus_file`` mode.

A sentence is an image's vocabulary keywords followed by the noun lemmas of its query's words.
Training cost grows with the sentences, so ``word2vec.max_sentences`` bounds them: each image's
sentence is kept with probability ``max_sentences / images`` (a seeded uniform draw per image in
corpus order, so the corpus does not depend on how the count step was split into parts), and
also whenever one of its keywords has been kept fewer than ``word2vec.keep_rare`` times so far,
so that rare keywords keep their occurrences (up to ``keep_rare``) and get a vector. With at most
``max_sentences`` images every sentence is kept.

Why a file: gensim's ``corpus_file`` mode reads it in C, one reader per thread; an iterable corpus
is fed by one Python thread (the iteration was 18% of the step's samples at 100k images, on 2
cores) and scales poorly past a few threads on a cluster node. The file is read the same way
with one thread: ``word2vec.workers=1`` stays bit-reproducible.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import Word2VecConfig


def _query_lines(query_terms: dict) -> tuple[np.ndarray, pa.Array, pa.Array, np.ndarray]:
    """(source, query id) -> joined query words, for a vectorised lookup: sorted int64 keys
    (source code << 32 | query id), the sources (codes are positions), the joined words by key
    with a last empty entry for "no query", and their word counts."""
    sources = sorted({s for s, _ in query_terms})
    code = {s: i for i, s in enumerate(sources)}
    items = sorted((code[s] * (1 << 32) + (q & 0xFFFFFFFF), " ".join(t)) for (s, q), t in query_terms.items())
    text = [v for _, v in items] + [""]
    return (np.asarray([k for k, _ in items], dtype=np.int64), pa.array(sources, pa.string()),
            pa.array(text, pa.string()), np.asarray([len(v.split()) for v in text], np.int64))


def write_corpus(batches: Iterable[pa.RecordBatch], vocab: set, query_terms: dict, dropped: set,
                 n_images: int, cfg: Word2VecConfig, path: Path) -> dict:
    """Write the selected sentences of ``batches`` (columns index, source, query_id, keywords, in
    corpus order) to ``path``, one a line, words separated by single spaces. Returns the counts
    (images seen, sentences and words written, the keep probability) for the step's report.

    Vectorised with Arrow over each batch (a Python loop per image cost 17 us an image: 4.5
    minutes of one core at 16M images); only the sampled images and those holding a still-rare
    keyword are visited one by one, in corpus order, for the ``keep_rare`` counts."""
    keep_p = 1.0 if not cfg.max_sentences or n_images <= cfg.max_sentences else cfg.max_sentences / n_images
    rng = np.random.default_rng(cfg.seed)
    vocab_arr = pa.array(sorted(vocab), pa.string())
    q_keys, q_sources, q_text, q_lens = _query_lines(query_terms)
    kept = np.zeros(len(vocab_arr), np.int64)       # per vocabulary word: occurrences kept so far
    dropped_arr = pa.array(sorted(dropped), pa.int64())
    images = sentences = words = 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for batch in batches:
            n = batch.num_rows
            # one draw per row, in corpus order: the same stream however the rows are batched
            draw = rng.random(n) < keep_p if keep_p < 1.0 else None
            live = ~pc.is_in(batch.column("index").cast(pa.int64()), value_set=dropped_arr).to_numpy(
                zero_copy_only=False)
            lists = batch.column("keywords")
            flat = pc.list_flatten(lists)
            parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
            ids = pc.index_in(flat, value_set=vocab_arr)
            in_vocab = ids.is_valid().to_numpy(zero_copy_only=False)
            word_ids = ids.filter(ids.is_valid()).to_numpy(zero_copy_only=False).astype(np.int64)
            word_row = parent[in_vocab]
            per_row = np.bincount(word_row, minlength=n)
            offsets = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int32)
            kw_text = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), flat.filter(in_vocab)), " ")
            code = pc.index_in(batch.column("source").cast(pa.string()), value_set=q_sources)
            known = code.is_valid().to_numpy(zero_copy_only=False)
            key = pc.fill_null(code, 0).to_numpy(zero_copy_only=False).astype(np.int64) * (1 << 32) + (
                batch.column("query_id").to_numpy(zero_copy_only=False).astype(np.int64) & 0xFFFFFFFF)
            at = np.searchsorted(q_keys, key)
            hit = known & (at < len(q_keys)) & (q_keys[np.minimum(at, max(len(q_keys) - 1, 0))] == key) \
                if len(q_keys) else np.zeros(n, bool)
            q_idx = np.where(hit, at, len(q_lens) - 1)
            q_str, q_len = q_text.take(pa.array(q_idx)), q_lens[q_idx]
            keep = live & ((per_row + q_len) > 0)
            images += int(live.sum())
            if draw is not None:
                keep &= _sampled(draw, live, word_ids, word_row, offsets, per_row, kept, cfg.keep_rare)
            both = (per_row > 0) & (q_len > 0)
            line = pc.if_else(pa.array(both), pc.binary_join_element_wise(kw_text, q_str, " "),
                              pc.if_else(pa.array(per_row > 0), kw_text, q_str))
            chosen = line.filter(pa.array(keep))
            if len(chosen):
                fh.write("\n".join(chosen.to_pylist()) + "\n")
                sentences += len(chosen)
                words += int((per_row + q_len)[keep].sum())
    return {"images": images, "sentences": sentences, "words": words, "keep_probability": round(keep_p, 6)}


def _sampled(draw, live, word_ids, word_row, offsets, per_row, kept, rare: int) -> np.ndarray:
    """Which live rows of a batch the sample keeps: the drawn ones, and in row order those with a
    keyword kept fewer than ``rare`` times so far (``kept`` is updated in place)."""
    n = len(draw)
    out = np.zeros(n, bool)
    still_rare = kept < rare
    has_rare = np.bincount(word_row[still_rare[word_ids]], minlength=n) > 0
    for r in np.flatnonzero(live & (draw | has_rare)):
        ws = word_ids[offsets[r]: offsets[r + 1]]
        if draw[r] or (kept[ws] < rare).any():
            out[r] = True
            np.add.at(kept, ws, 1)
    return out


def check_words(words: Iterable[str], where: str) -> None:
    """Corpus words are split on whitespace when read back: refuse one that holds any."""
    for w in words:
        if not w or any(c.isspace() for c in w):
            raise ValueError(f"{where}: keyword {w!r} is empty or holds whitespace; the word2vec corpus "
                             f"file cannot hold it")
