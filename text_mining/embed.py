"""Word vectors (gensim word2vec on the mined corpus) and text embeddings of images and classes."""
from __future__ import annotations

import logging
import os
import zlib

import numpy as np

from .config import Word2VecConfig

log = logging.getLogger(__name__)


def stable_hash(text: str) -> int:
    """A hash that does not change between processes (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


def train_word2vec(sentences, cfg: Word2VecConfig):
    """Train word2vec on a re-iterable corpus of keyword lists; returns gensim KeyedVectors.

    ``workers=1`` with a fixed seed is bit-reproducible; more threads are faster but not."""
    from gensim.models import Word2Vec

    workers = cfg.workers or os.cpu_count() or 1
    model = Word2Vec(
        sentences=sentences, vector_size=cfg.vector_size, window=cfg.window, min_count=1,
        sg=cfg.sg, negative=cfg.negative, epochs=cfg.epochs, seed=cfg.seed, workers=workers,
        hashfxn=stable_hash, sample=1e-3,
    )
    log.info("word2vec: %d words, %d dims, %d epochs, %d threads", len(model.wv), cfg.vector_size,
             cfg.epochs, workers)
    return model.wv


def normalise_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def word_matrix(kv, words: list[str]) -> np.ndarray:
    """Unit vectors of ``words`` (zero rows for words without a vector)."""
    out = np.zeros((len(words), kv.vector_size), dtype=np.float32)
    for i, w in enumerate(words):
        j = kv.key_to_index.get(w)
        if j is not None:
            out[i] = kv.vectors[j]
    return normalise_rows(out)


def mean_embeddings(id_lists, word_vectors: np.ndarray) -> np.ndarray:
    """Unit mean of the unit word vectors of each list of word ids (zero rows for empty lists)."""
    out = np.zeros((len(id_lists), word_vectors.shape[1]), dtype=np.float32)
    lengths = np.fromiter((len(x) for x in id_lists), dtype=np.int64, count=len(id_lists))
    if lengths.sum():
        flat = np.fromiter((i for ids in id_lists for i in ids), dtype=np.int64, count=int(lengths.sum()))
        rows = np.repeat(np.arange(len(id_lists)), lengths)
        np.add.at(out, rows, word_vectors[flat])
    return normalise_rows(out)
