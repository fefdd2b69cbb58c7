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
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa

from .config import Word2VecConfig


def write_corpus(batches: Iterable[pa.RecordBatch], vocab: set, query_terms: dict, dropped: set,
                 n_images: int, cfg: Word2VecConfig, path: Path,
                 on_progress: Callable[[int], None] | None = None) -> dict:
    """Write the selected sentences of ``batches`` (columns index, source, query_id, keywords, in
    corpus order) to ``path``, one a line, words separated by single spaces. Returns the counts
    (images seen, sentences and words written, the keep probability) for the step's report."""
    keep_p = 1.0 if not cfg.max_sentences or n_images <= cfg.max_sentences else cfg.max_sentences / n_images
    rng = np.random.default_rng(cfg.seed)
    kept: dict[str, int] = {}
    rare = cfg.keep_rare
    images = sentences = tokens = 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for batch in batches:
            d = batch.to_pydict()
            # one draw per row, in corpus order: the same stream however the rows are batched
            draw = rng.random(len(d["index"])) < keep_p if keep_p < 1.0 else None
            lines = []
            for i, (idx, src, qid, kws) in enumerate(zip(d["index"], d["source"], d["query_id"], d["keywords"])):
                if idx in dropped:
                    continue
                images += 1
                words = [k for k in kws if k in vocab]
                if draw is not None and not draw[i] and not any(kept.get(w, 0) < rare for w in words):
                    continue
                sent = words + query_terms.get((src, qid), [])
                if not sent:
                    continue
                for w in words:
                    kept[w] = kept.get(w, 0) + 1
                lines.append(" ".join(sent))
                tokens += len(sent)
            if lines:
                fh.write("\n".join(lines) + "\n")
                sentences += len(lines)
            if on_progress is not None:
                on_progress(len(d["index"]))
    return {"images": images, "sentences": sentences, "words": tokens, "keep_probability": round(keep_p, 6)}


def check_words(words: Iterable[str], where: str) -> None:
    """Corpus words are split on whitespace when read back: refuse one that holds any."""
    for w in words:
        if not w or any(c.isspace() for c in w):
            raise ValueError(f"{where}: keyword {w!r} is empty or holds whitespace; the word2vec corpus "
                             f"file cannot hold it")
