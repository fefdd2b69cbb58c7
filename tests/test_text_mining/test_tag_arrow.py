"""The tag step's columns in Arrow and numpy (text_mining/tag.py, embed.IdLists) give what the
per-image Python lists gave: keyword ids in each row's order, the same label weights, the same
query texts."""
import random

import numpy as np
import pyarrow as pa

from text_mining.embed import IdLists, mean_embeddings
from text_mining.tag import VocabularyIds, _query_texts


def _lists(rng, n, vocab):
    return [rng.sample(range(vocab), rng.choice([0, 0, 1, 2, 5, 12])) for _ in range(n)]


def test_id_lists_equal_python_lists():
    rng = random.Random(0)
    lists = _lists(rng, 200, 50)
    flat = IdLists.of(lists)
    assert IdLists.of(flat) is flat and len(flat) == 200
    assert flat.lengths.tolist() == [len(x) for x in lists]
    assert flat.rows().tolist() == [i for i, x in enumerate(lists) for _ in x]
    srt = flat.sorted_within()
    assert [srt.ids[a:b].tolist() for a, b in zip(srt.offsets[:-1], srt.offsets[1:])] == [sorted(x) for x in lists]
    which = [5, 0, 5, 199, 3]
    got = flat.take(np.array(which))
    assert [got.ids[a:b].tolist() for a, b in zip(got.offsets[:-1], got.offsets[1:])] == [lists[i] for i in which]
    vecs = np.random.default_rng(1).standard_normal((50, 8)).astype(np.float32)
    assert np.array_equal(mean_embeddings(flat, vecs), mean_embeddings(lists, vecs))
    assert len(IdLists.of([])) == 0 and IdLists.of([]).take(np.zeros(0, np.int64)).ids.size == 0


def test_vocabulary_ids_keep_each_rows_order():
    vocab = VocabularyIds(["dog", "cat", "bird", "fish"], [3, 0, 2, 1])
    lookup = {"dog": 3, "cat": 0, "bird": 2, "fish": 1}
    rows = [["bird", "zebra", "dog"], [], ["zebra"], ["fish", "cat", "dog", "bird"], ["cat"]]
    arr = pa.array(rows, pa.list_(pa.string()))
    for a in (arr, arr.slice(1, 4)):   # a slice: offsets that do not start at 0
        want = [[lookup[k] for k in r if k in lookup] for r in a.to_pylist()]
        got = vocab.lists(a)
        assert [got.ids[x:y].tolist() for x, y in zip(got.offsets[:-1], got.offsets[1:])] == want
    assert len(vocab.lists(pa.array([], pa.list_(pa.string())))) == 0


class _Release:
    def __init__(self):
        self.calls = 0

    def query_text(self, source, qid):
        self.calls += 1
        return f"{source}:{qid}"


def test_query_texts_once_per_distinct_pair():
    rng = random.Random(2)
    sources = [rng.choice(["google", "flickr", "web"]) for _ in range(300)]
    qids = np.array([rng.choice([-1, 0, 7, 4999]) for _ in range(300)], dtype=np.int32)
    rel = _Release()
    got = _query_texts(rel, pa.array(sources, pa.string()), qids)
    assert got.to_pylist() == [f"{s}:{q}" for s, q in zip(sources, qids.tolist())]
    assert rel.calls == len(set(zip(sources, qids.tolist())))
    assert _query_texts(rel, pa.array([], pa.string()), np.zeros(0, np.int32)).to_pylist() == []
