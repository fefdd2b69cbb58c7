"""LW-Set label weights: the formula on hand-made tables, and the example's results."""
import numpy as np
import pyarrow.parquet as pq
import pytest

from text_mining import schema
from text_mining.config import WeightsConfig
from text_mining.weights import LabelWeighter, csr_from_lists


def test_weights_follow_the_formula():
    # 2 keywords, 3 classes
    table = csr_from_lists([[0, 1], [2]], [[0.8, 0.4], [0.6]], 3)
    neighbours = csr_from_lists([[0, 1], [1], [2, 0]], [[1.0, 0.5], [1.0], [1.0, 0.2]], 3)
    cfg = WeightsConfig(text=0.5, query=0.5, knn=0.0, top_k=10, power=1.0)
    w = LabelWeighter(cfg, table, neighbours, np.eye(2, dtype=np.float32),
                      np.zeros((0, 2), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int32))
    ids, weights = w.weights([[0, 1], []], np.array([0, 2]), np.array([10, 11]))
    # image 0: text = mean of rows 0 and 1 = [0.4, 0.2, 0.3]; query (class 0) = [1, 0.5, 0]
    s = 0.5 * np.array([0.4, 0.2, 0.3]) + 0.5 * np.array([1.0, 0.5, 0.0])
    assert ids[0].tolist() == [0, 1, 2]
    assert weights[0] == pytest.approx(s / s.sum(), abs=1e-6)
    # image 1 has no keywords: its query's neighbourhood
    assert ids[1].tolist() == [2, 0] and weights[1] == pytest.approx([1 / 1.2, 0.2 / 1.2], abs=1e-6)
    # sharpening and truncation
    w.cfg = WeightsConfig(text=0.5, query=0.5, knn=0.0, top_k=2, power=2.0)
    ids, weights = w.weights([[0, 1]], np.array([0]), np.array([10]))
    top = np.array([s[0], s[1]]) ** 2
    assert ids[0].tolist() == [0, 1] and weights[0] == pytest.approx(top / top.sum(), abs=1e-6)


def test_knn_component_ignores_the_image_itself():
    table = csr_from_lists([[0], [1]], [[1.0], [1.0]], 2)
    neighbours = csr_from_lists([[0], [1]], [[1.0], [1.0]], 2)
    ref = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    cfg = WeightsConfig(text=0.0, query=0.0, knn=1.0, knn_k=2, power=1.0)
    w = LabelWeighter(cfg, table, neighbours, np.eye(2, dtype=np.float32), ref,
                      np.array([5, 6, 7]), np.array([1, 1, 0], dtype=np.int32))
    # image 5 is reference row 0: its neighbours are rows 1 (class 1) and then 2 (class 0)
    ids, weights = w.weights([[0]], np.array([0]), np.array([5]))
    assert sorted(ids[0].tolist()) == [0, 1] and weights[0] == pytest.approx([0.5, 0.5])
    # an image not in the reference sees both class-1 rows
    ids, weights = w.weights([[0]], np.array([0]), np.array([99]))
    assert ids[0].tolist() == [1] and weights[0] == pytest.approx([1.0])


def test_example_weights_sum_to_one_and_rank_own_class_high(mined_v1):
    t = pq.read_table(mined_v1 / schema.IMAGES_FILE).to_pydict()
    n_classes = pq.read_metadata(mined_v1 / schema.CLASSES_FILE).num_rows
    ranks = []
    for ids, w, c in zip(t["label_ids"], t["label_weights"], t["class_id"]):
        assert len(ids) == len(w) >= 1 and len(set(ids)) == len(ids)
        assert all(0 <= i < n_classes for i in ids)
        assert abs(sum(w) - 1.0) < 1e-5 and all(x > 0 for x in w)
        assert list(w) == sorted(w, reverse=True)
        ranks.append(ids.index(c) if c in ids else 99)
    ranks = np.array(ranks)
    # the example's text is about the image's own class for ~70% of images, about another class
    # for ~15%: the own class must still come first for most and be in the top 3 for nearly all
    assert (ranks == 0).mean() >= 0.8
    assert (ranks < 3).mean() >= 0.95
