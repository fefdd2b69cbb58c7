import numpy as np
import pandas as pd

from text_mining.config import VocabularyConfig
from text_mining.vocabulary import filter_vocabulary


def _counts():
    rows = [("photo", 900, 800), ("image", 700, 600), ("dog", 300, 250), ("cat", 260, 250),
            ("beach", 90, 80), ("puppy", 40, 30), ("zebra", 12, 10), ("aardvark", 3, 3),
            ("qwerty", 1, 1), ("bird", 120, 100)]
    return pd.DataFrame(rows, columns=["keyword", "count", "df"])


def test_filter_rules_and_order():
    vocab, info = filter_vocabulary(_counts(), n_images=1000,
                                    cfg=VocabularyConfig(drop_top=1, max_df=0.5, min_df=5, max_size=100))
    # photo: most common; image: in 60% > 50% of images; aardvark, qwerty: below min_df
    assert vocab["keyword"].tolist() == ["cat", "dog", "bird", "beach", "puppy", "zebra"]
    assert vocab["id"].tolist() == list(range(6))
    assert vocab.loc[vocab.keyword == "dog", "count"].item() == 300
    assert info["dropped_most_common"] == ["photo"]
    assert info["dropped_over_max_df"] == ["image"]
    assert info["dropped_rare_count"] == 2 and info["vocabulary_size"] == 6


def test_size_cap_keeps_most_frequent():
    vocab, info = filter_vocabulary(_counts(), 1000, VocabularyConfig(drop_top=0, max_df=1.0, min_df=1, max_size=3))
    assert vocab["keyword"].tolist() == ["photo", "image", "cat"]
    assert info["dropped_over_max_size_count"] == 7


def _extract_parts(tmp_path, n_parts=4, per_part=15000):
    import pyarrow as pa
    import pyarrow.parquet as pq
    parts = []
    for p in range(n_parts):
        d = tmp_path / f"part-{p}"
        d.mkdir()
        idx = list(range(p * per_part, (p + 1) * per_part))
        pq.write_table(pa.table({"index": idx, "class_id": [i % 7 for i in idx],
                                 "keywords": [["w%d" % (i % 50)] + ["zz"] * (i % 3 == 0) + ["w%d" % (i % 13)] if i % 5
                                              else ["zz"] * (i % 2) for i in idx]}),   # zz: not a keyword
                       d / "extract.parquet")
        parts.append(d)
    return parts


def test_knn_reference_memory_is_bounded_by_its_size(tmp_path):
    """The reference set is drawn in two passes: memory follows weights.knn_reference, not the
    corpus, and the draw equals a single pass over all candidates (issue 19)."""
    import tracemalloc

    import numpy as np

    import pyarrow.parquet as pq

    from text_mining.embed import mean_embeddings
    from text_mining.vocabulary import knn_reference
    parts = _extract_parts(tmp_path)
    words = [f"w{i}" for i in range(50)]
    vecs = np.eye(50, dtype=np.float32)
    dropped = np.asarray([3, 4], dtype=np.int64)
    peaks = {}
    for size in (10, 10**9):
        tracemalloc.start()
        emb, index, classes = knn_reference(parts, words, dropped, size, 0, vecs)
        peaks[size] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[10] * 3 < peaks[10**9]
    # the candidates, one plain pass per image: kept images with vocabulary keywords, ids in order
    vocab = {w: i for i, w in enumerate(words)}
    cands = []
    for p in parts:
        d = pq.read_table(p / "extract.parquet", columns=["index", "class_id", "keywords"]).to_pydict()
        for idx, cls, kws in zip(d["index"], d["class_id"], d["keywords"]):
            ids = [vocab[k] for k in kws if k in vocab]
            if idx not in (3, 4) and ids:
                cands.append((idx, cls, ids))
    pick = np.sort(np.random.default_rng(0).choice(len(cands), size=10, replace=False))
    emb, index, classes = knn_reference(parts, words, dropped, 10, 0, vecs)
    assert index.tolist() == [cands[i][0] for i in pick] and classes.tolist() == [cands[i][1] for i in pick]
    assert emb.shape == (10, 50) and np.allclose(np.linalg.norm(emb, axis=1), 1)
    assert np.array_equal(emb, mean_embeddings([cands[i][2] for i in pick], vecs))
    emb, index, _ = knn_reference(parts, words, dropped, 10**9, 0, vecs)
    assert index.tolist() == [c[0] for c in cands]
    assert np.array_equal(emb, mean_embeddings([c[2] for c in cands], vecs))


def test_mean_embeddings_sum_in_list_order_like_add_at():
    """The sparse-product mean equals the plain per-row np.add.at sum, bit for bit (repeated ids,
    empty lists, float32)."""
    from text_mining.embed import mean_embeddings, normalise_rows

    rng = np.random.default_rng(3)
    vecs = normalise_rows(rng.standard_normal((500, 16)).astype(np.float32))
    lists = [list(rng.integers(0, 500, rng.integers(0, 12))) for _ in range(300)] + [[], [7, 7, 7]]
    ref = np.zeros((len(lists), 16), np.float32)
    for i, ids in enumerate(lists):
        np.add.at(ref, np.full(len(ids), i, dtype=np.int64), vecs[np.asarray(ids, dtype=np.int64)])
    got = mean_embeddings(lists, vecs)
    assert got.dtype == np.float32
    assert np.array_equal(got, normalise_rows(ref))
    assert not got[-2].any() and np.allclose(got[-1], vecs[7], atol=1e-6)
    assert mean_embeddings([[], []], vecs).shape == (2, 16)
