"""The LW-Set KNN search (text_mining/knn.py): exact search against brute force, ivf recall and
batch independence, the vectorised weighter against the per-image loops it replaced, the old
vocabulary folder without centroids, and a tag run without torch."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tests.conftest import example_config
from text_mining import knn
from text_mining.config import WeightsConfig
from text_mining.embed import IdLists, mean_embeddings
from text_mining.weights import LabelWeighter, csr_from_lists, sharpen

REPO = Path(__file__).resolve().parents[2]


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _brute_top(ref, x, take):
    """Positions of the ``take`` best reference rows per query: float64 scores rounded to 5
    decimals, ties by position (the rule the search keeps)."""
    q = np.rint(x.astype(np.float64) @ ref.astype(np.float64).T * 1e5)
    return np.stack([np.lexsort((np.arange(len(ref)), -row))[:take] for row in q])


def _clustered(rng, n, d=24, clusters=40, spread=0.15):
    centres = rng.standard_normal((clusters, d))
    return _unit(centres[rng.integers(clusters, size=n)] + spread * rng.standard_normal((n, d)))


def test_exact_search_equals_brute_force_with_ties():
    rng = np.random.default_rng(0)
    ref = _clustered(rng, 600)
    ref[100:130] = ref[7]                       # 30 copies: more than the candidates faiss returns
    ref[200:215] = _unit(ref[9:10] + 1e-7 * rng.standard_normal((15, ref.shape[1])))  # near-ties
    x = np.concatenate([ref[[7, 9, 100, 300]], _clustered(rng, 200)])
    s = knn.NeighbourSearch(ref, "exact")
    for take in (1, 11, 40):
        pos, _ = s.search(x, take)
        assert (pos == _brute_top(ref, x, take)).all(), take
    assert (s.search(x, 11)[0][0] == np.r_[7, 100:110]).all()   # copies of row 7, by position


def _ivf(ref, lists=32, probe=8):
    return knn.NeighbourSearch(ref, "ivf", knn.train_centroids(ref, lists, seed=0), probe)


def test_ivf_recall_is_high_and_results_do_not_depend_on_batches(monkeypatch):
    rng = np.random.default_rng(1)
    ref = _clustered(rng, 3000)
    x = _clustered(np.random.default_rng(2), 500)
    ivf, exact = _ivf(ref), knn.NeighbourSearch(ref, "exact")
    assert knn.knn_recall(ivf, exact, x, 10) >= 0.95
    whole = ivf.search(x, 11)
    perm = np.random.default_rng(3).permutation(len(x))
    parts = [ivf.search(x[perm[a:b]], 11) for a, b in ((0, 7), (7, 260), (260, 500))]
    back = np.argsort(perm)
    for got, want in zip((np.concatenate([p[i] for p in parts])[back] for i in (0, 1)), whole):
        assert (got == want).all()
    monkeypatch.setattr(knn, "CHUNK", 64)   # searched 64 rows at a time
    assert all((a == b).all() for a, b in zip(ivf.search(x, 11), whole))
    # another build from the same centroids (another tag part) is the same index
    again = knn.NeighbourSearch(ref, "ivf", ivf.centroids, 8)
    assert (again.search(x, 11)[0] == whole[0]).all()


def test_centroids_are_seeded_and_the_same_with_more_threads():
    import faiss
    ref = _clustered(np.random.default_rng(4), 2000)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    a = knn.train_centroids(ref, 16, seed=5)
    faiss.omp_set_num_threads(1)
    b = knn.train_centroids(ref, 16, seed=5)
    faiss.omp_set_num_threads(before)
    assert a.dtype == np.float32 and a.shape == (16, ref.shape[1]) and (a == b).all()
    assert not (knn.train_centroids(ref, 16, seed=6) == a).all()
    assert knn.auto_lists(100_000) == 632 and knn.auto_lists(100) == 2 and knn.auto_lists(5) == 1


# ---- the weighter against the per-image loops it replaced -----------------------------------

def _old_knn_scores(w: LabelWeighter, keyword_ids, image_index):
    """The per-image loop of the previous knn_scores, over a brute-force float64 search."""
    n, k = len(keyword_ids), w.cfg.knn_k
    n_ref = len(w.ref)
    k = min(k, max(1, n_ref - 1))
    rows, cols = [], []
    for i in range(n):
        if not keyword_ids[i]:
            continue
        emb = mean_embeddings([sorted(keyword_ids[i])], w.kw_vecs)
        sim = np.round(emb.astype(np.float64) @ w.ref.astype(np.float64).T, 5)[0]
        pos = np.arange(n_ref)
        keep = w.ref_index != image_index[i]
        pos, sim = pos[keep], sim[keep]
        chosen = pos[np.lexsort((pos, -sim))[:k]]
        rows.append(np.full(len(chosen), i))
        cols.append(w.ref_class[chosen])
    r, c = np.concatenate(rows), np.concatenate(cols).astype(np.int64)
    return sp.csr_matrix((np.full(len(r), 1.0 / k), (r, c)), shape=(n, w.n_classes))


def _old_weights(w: LabelWeighter, keyword_ids, class_ids, image_index):
    """The per-row loop of the previous LabelWeighter.weights."""
    cfg = w.cfg
    score = cfg.query * w.neighbours[np.asarray(class_ids, dtype=np.int64)]
    score = score + cfg.text * w.text_scores(keyword_ids)
    score = score + cfg.knn * _old_knn_scores(w, keyword_ids, image_index)
    score = sp.csr_matrix(score)
    score.sum_duplicates()
    out_ids, out_w = [], []
    for r in range(score.shape[0]):
        lo, hi = score.indptr[r], score.indptr[r + 1]
        cols, vals = score.indices[lo:hi], score.data[lo:hi]
        keep = vals > 0
        cols, vals = cols[keep], vals[keep]
        order = np.lexsort((cols, -np.round(vals, 9)))[: cfg.top_k]
        cols, vals = cols[order], vals[order]
        if len(vals) == 0:
            cols, vals = np.asarray([class_ids[r]]), np.asarray([1.0])
        ww = sharpen(vals, cfg.power).astype(np.float32)
        ww /= ww.sum(dtype=np.float64)
        out_ids.append(cols.astype(np.int32))
        out_w.append(ww.astype(np.float32))
    return out_ids, out_w


def _random_weighter(rng, search, query=0.4, n_kw=300, n_cls=60, n_ref=700):
    d = 16
    kw_vecs = _clustered(rng, n_kw, d=d, clusters=25)
    table = csr_from_lists([rng.choice(n_cls, 5, replace=False) for _ in range(n_kw)],
                           [np.round(rng.random(5), 3) for _ in range(n_kw)], n_cls)
    nb = csr_from_lists([np.r_[c, rng.choice(n_cls, 4, replace=False)] for c in range(n_cls)],
                        [np.r_[1.0, np.round(rng.random(4), 2)] for _ in range(n_cls)], n_cls)
    ref_sets = [rng.choice(n_kw, int(rng.integers(1, 4)), replace=False) for _ in range(n_ref)]
    ref_sets[10:30] = [ref_sets[3]] * 20        # duplicated keyword sets: exact ties
    ref_index = rng.permutation(10 * n_ref)[:n_ref]
    cfg = WeightsConfig(query=query, knn_k=10, top_k=10, knn_search=search, knn_probe=8)
    ref = mean_embeddings(ref_sets, kw_vecs)
    cents = knn.train_centroids(ref, 16, 0) if search == "ivf" else None
    w = LabelWeighter(cfg, table, nb, kw_vecs, ref, ref_index, rng.integers(n_cls, size=n_ref).astype(np.int32),
                      centroids=cents)
    return w, ref_sets, ref_index


def _images(rng, w, ref_sets, ref_index, n=400):
    n_kw = len(w.kw_vecs)
    sets = [list(rng.choice(n_kw, int(rng.integers(0, 6)), replace=False)) for _ in range(n)]
    index = rng.integers(10 * len(ref_sets), size=n)
    own = rng.choice(len(ref_sets), 120, replace=False)          # images of the reference set
    for i, j in enumerate(own):
        sets[i], index[i] = list(ref_sets[j]), ref_index[j]
    sets[200:210] = [list(ref_sets[3])] * 10
    return sets, rng.integers(w.n_classes, size=n), index


@pytest.mark.parametrize("query", [0.4, 0.0])
def test_vectorised_weights_equal_the_per_image_loops(query):
    rng = np.random.default_rng(7)
    w, ref_sets, ref_index = _random_weighter(rng, "exact", query=query)
    sets, classes, index = _images(rng, w, ref_sets, ref_index)
    new = w.knn_scores(sets, index)
    old = _old_knn_scores(w, sets, index)
    assert (new != old).nnz == 0
    assert (w.knn_scores(IdLists.of(sets), index) != old).nnz == 0   # the tag step's flat lists
    flat = w.weights_flat(IdLists.of(sets), classes, index)
    for a, b in zip(flat, w.weights_flat(sets, classes, index)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    ids, ws = w.weights(sets, classes, index)
    old_ids, old_ws = _old_weights(w, sets, classes, index)
    assert len(ids) == len(old_ids)
    for a, b, c, e in zip(ids, old_ids, ws, old_ws):
        assert a.dtype == b.dtype and (a == b).all()
        assert c.dtype == e.dtype and (c == e).all()   # bit for bit


def test_ivf_weights_do_not_depend_on_batches():
    rng = np.random.default_rng(8)
    w, ref_sets, ref_index = _random_weighter(rng, "ivf")
    sets, classes, index = _images(rng, w, ref_sets, ref_index)
    ids, ws = w.weights(sets, classes, index)
    for cut in (1, 57, 333):
        a = w.weights(sets[:cut], classes[:cut], index[:cut])
        b = w.weights(sets[cut:], classes[cut:], index[cut:])
        for x, y in zip(ids, a[0] + b[0]):
            assert (x == y).all()
        for x, y in zip(ws, a[1] + b[1]):
            assert (x == y).all()


# ---- the stage: an old vocabulary folder, and no torch ----------------------------------------

def _retag_copy(mined: Path, dest: Path) -> Path:
    shutil.copytree(mined, dest)
    shutil.rmtree(dest / "_work" / "tag")
    return dest


def test_vocabulary_writes_centroids_and_an_old_folder_gets_a_one_line_error(mined_v1, example_v1, tmp_path, capsys):
    from text_mining.tag import tag_part
    vocab = mined_v1 / "_work" / "vocabulary"
    c = np.load(vocab / knn.CENTROIDS_FILE, allow_pickle=False)
    n_ref = len(np.load(vocab / "knn_reference.npz")["index"])
    assert c.dtype == np.float32 and len(c) == knn.auto_lists(n_ref)
    out = _retag_copy(mined_v1, tmp_path / "old")
    (out / "_work" / "vocabulary" / knn.CENTROIDS_FILE).unlink()
    with pytest.raises(knn.CentroidsMissing) as err:
        tag_part(example_v1, out, example_config(), 0, 1)
    msg = str(err.value)
    assert "\n" not in msg and knn.CENTROIDS_FILE in msg and "knn_search: exact" in msg
    assert not (out / "_work" / "tag" / "part-00000-of-00001").exists()
    from text_mining.__main__ import main   # the command line: one error line, exit 2
    assert main(["tag", "--webvision", str(example_v1), "--out", str(out), "--config",
                 str(REPO / "configs" / "text_mining" / "example.yaml"), "--part", "0", "--num-parts", "1"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {msg}"


def test_tag_step_imports_no_torch(mined_v1, example_v1, tmp_path):
    out = _retag_copy(mined_v1, tmp_path / "again")
    code = ("import sys\nfrom tests.conftest import example_config\nfrom text_mining.tag import tag_part\n"
            f"r = tag_part({str(example_v1)!r}, {str(out)!r}, example_config(), 0, 1)\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert 'gensim' not in sys.modules, 'gensim imported'\nprint(r['images'])")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.split()[-1]) > 0
    import pyarrow.parquet as pq
    part = "part-00000-of-00001/images.parquet"
    assert pq.read_table(out / "_work" / "tag" / part).equals(pq.read_table(mined_v1 / "_work" / "tag" / part))
