"""The word2vec corpus of the vocabulary step (text_mining/corpus.py): every sentence up to
``word2vec.max_sentences`` images, a seeded sample beyond that keeps rare keywords, the same file
however the rows are batched, and bit-reproducible training on it with one thread."""
from __future__ import annotations

import collections

import numpy as np
import pyarrow as pa
import pytest

from text_mining.config import Word2VecConfig
from text_mining.corpus import check_words, write_corpus
from text_mining.embed import train_word2vec

WORDS = [f"w{i}" for i in range(300)]


def _rows(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    zipf = np.minimum(rng.zipf(1.3, size=(n, 8)), len(WORDS)) - 1     # a long tail of rare words
    return {"index": list(range(n)), "source": ["flickr" if i % 3 else "google" for i in range(n)],
            "query_id": [i % 5 for i in range(n)],
            "keywords": [list(dict.fromkeys(WORDS[j] for j in row)) + ["notvocab"] for row in zipf]}


def _batches(rows: dict, size: int):
    n = len(rows["index"])
    for lo in range(0, n, size):
        yield pa.record_batch({k: v[lo: lo + size] for k, v in rows.items()})


QTERMS = {("google", q): [f"query{q}"] for q in range(5)} | {("flickr", q): [f"query{q}", "x"] for q in range(5)}


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_every_sentence_up_to_the_cap(tmp_path):
    rows = _rows(400)
    dropped = {3, 10}
    stats = write_corpus(_batches(rows, 64), set(WORDS), QTERMS, dropped, 398,
                         Word2VecConfig(max_sentences=398), tmp_path / "c.txt")
    want = [" ".join([k for k in kws if k in set(WORDS)] + QTERMS[(s, q)])
            for i, s, q, kws in zip(rows["index"], rows["source"], rows["query_id"], rows["keywords"])
            if i not in dropped]
    assert _lines(tmp_path / "c.txt") == want
    assert stats == {"images": 398, "sentences": 398, "words": sum(len(x.split()) for x in want),
                     "keep_probability": 1.0}


def test_a_sample_beyond_the_cap_keeps_rare_keywords(tmp_path):
    rows = _rows(4000, seed=1)
    cfg = Word2VecConfig(max_sentences=500, keep_rare=5, seed=7)
    stats = write_corpus(_batches(rows, 1000), set(WORDS), QTERMS, set(), 4000, cfg, tmp_path / "c.txt")
    lines = _lines(tmp_path / "c.txt")
    assert stats["keep_probability"] == 0.125 and stats["sentences"] == len(lines)
    assert 500 < len(lines) < 1500            # the sample, plus the sentences the rare words kept
    df = collections.Counter(w for kws in rows["keywords"] for w in kws if w in set(WORDS))
    got = collections.Counter(w for line in lines for w in line.split() if w in set(WORDS))
    rare = [w for w in df if df[w] < 40]
    assert rare and all(got[w] >= min(df[w], 5) for w in df)   # no keyword loses its vector
    assert all(got[w] == df[w] for w in rare if df[w] <= 5)
    # the same draw however the count step's rows come in batches
    write_corpus(_batches(rows, 333), set(WORDS), QTERMS, set(), 4000, cfg, tmp_path / "d.txt")
    assert _lines(tmp_path / "d.txt") == lines
    # another seed draws another sample
    write_corpus(_batches(rows, 1000), set(WORDS), QTERMS, set(), 4000,
                 Word2VecConfig(max_sentences=500, keep_rare=5, seed=8), tmp_path / "e.txt")
    assert _lines(tmp_path / "e.txt") != lines


def test_words_with_whitespace_are_refused():
    check_words(["dog", "hot_dog"], "the vocabulary")
    with pytest.raises(ValueError, match="the vocabulary: keyword 'hot dog'"):
        check_words(["dog", "hot dog"], "the vocabulary")


def test_one_thread_training_on_the_file_is_reproducible(tmp_path):
    rows = _rows(600, seed=2)
    write_corpus(_batches(rows, 600), set(WORDS), QTERMS, set(), 600, Word2VecConfig(), tmp_path / "c.txt")
    cfg = Word2VecConfig(vector_size=16, epochs=2, workers=1)
    a, b = train_word2vec(tmp_path / "c.txt", cfg), train_word2vec(tmp_path / "c.txt", cfg)
    assert a.index_to_key == b.index_to_key and "query3" in a.key_to_index
    assert np.array_equal(a.vectors, b.vectors)
    (tmp_path / "empty.txt").write_text("")
    assert len(train_word2vec(tmp_path / "empty.txt", cfg)) == 0
