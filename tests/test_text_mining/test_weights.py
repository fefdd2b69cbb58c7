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


@pytest.mark.parametrize("search", ["exact", "ivf"])
def test_knn_component_ignores_the_image_itself(search):
    table = csr_from_lists([[0], [1]], [[1.0], [1.0]], 2)
    neighbours = csr_from_lists([[0], [1]], [[1.0], [1.0]], 2)
    ref = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    cfg = WeightsConfig(text=0.0, query=0.0, knn=1.0, knn_k=2, power=1.0, knn_search=search, knn_probe=1)
    w = LabelWeighter(cfg, table, neighbours, np.eye(2, dtype=np.float32), ref,
                      np.array([5, 6, 7]), np.array([1, 1, 0], dtype=np.int32),
                      centroids=np.array([[1, 0], [0, 1]], dtype=np.float32))
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


def _slide_weighter(power: float) -> LabelWeighter:
    """One class whose WordNet neighbourhood scores the slide's example 0.77/0.45/0.31/0.28/0.11."""
    neighbours = csr_from_lists([[0, 1, 2, 3, 4]] + [[c] for c in range(1, 5)],
                                [[0.77, 0.45, 0.31, 0.28, 0.11]] + [[1.0]] * 4, 5)
    table = csr_from_lists([[0]], [[1.0]], 5)
    cfg = WeightsConfig(text=0.0, query=1.0, knn=0.0, top_k=10, power=power)
    return LabelWeighter(cfg, table, neighbours, np.eye(1, dtype=np.float32),
                         np.zeros((0, 1), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int32))


@pytest.mark.parametrize("power, shown", [(4.0, [0.86, 0.10, 0.02, 0.02, 0.00]),
                                          (1.0, [0.40, 0.23, 0.16, 0.15, 0.06])])
def test_slide_example_under_power_4_and_linear(power, shown):
    """The numbers the docs quote for the slide's example, from the weighter itself."""
    scores = np.array([0.77, 0.45, 0.31, 0.28, 0.11])
    ids, weights = _slide_weighter(power).weights([[]], np.array([0]), np.array([0]))
    assert ids[0].tolist() == [0, 1, 2, 3, 4]
    assert weights[0] == pytest.approx(scores ** power / (scores ** power).sum(), abs=1e-6)
    assert np.round(weights[0].astype(np.float64), 2).tolist() == pytest.approx(shown, abs=1e-6)


def test_report_gives_top_and_own_class_weight_percentiles(tmp_path):
    """The report's distributions, on an images table written here (two row groups)."""
    import pyarrow as pa
    from text_mining.report import markdown, weight_distribution
    rng = np.random.default_rng(0)
    n = 200
    rows = {"class_id": [], "keyword_ids": [], "label_ids": [], "label_weights": []}
    for i in range(n):
        k = int(rng.integers(1, 6))
        w = np.sort(rng.random(k))[::-1]
        w = (w / w.sum()).astype(np.float32)
        ids = rng.choice(50, size=k, replace=False).astype(np.int32)
        own = int(ids[int(rng.integers(k))]) if i % 3 else 99    # a third: own class not among its labels
        rows["class_id"].append(own)
        rows["keyword_ids"].append([] if i % 4 == 0 else [1, 2])
        rows["label_ids"].append(ids.tolist())
        rows["label_weights"].append(w.tolist())
    table = pa.table({"class_id": pa.array(rows["class_id"], pa.int32()),
                      "keyword_ids": pa.array(rows["keyword_ids"], pa.list_(pa.int32())),
                      "label_ids": pa.array(rows["label_ids"], pa.list_(pa.int32())),
                      "label_weights": pa.array(rows["label_weights"], pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "images.parquet", row_group_size=70)
    d = weight_distribution(tmp_path / "images.parquet")
    top = [w[0] for w in rows["label_weights"]]
    own = [dict(zip(ids, w)).get(c, 0.0) for ids, w, c in zip(rows["label_ids"], rows["label_weights"], rows["class_id"])]
    no_kw = [o for o, k in zip(own, rows["keyword_ids"]) if not k]
    for q in (10, 50, 90):
        assert d["top_weight"][f"p{q}"] == pytest.approx(np.percentile(top, q), abs=1e-4)
        assert d["own_class_weight"][f"p{q}"] == pytest.approx(np.percentile(own, q), abs=1e-4)
        assert d["own_class_weight_without_keywords"][f"p{q}"] == pytest.approx(np.percentile(no_kw, q), abs=1e-4)
    assert d["images_without_keywords"] == len(no_kw) and d["own_class_weight"]["p10"] == 0.0
    report = {"webvision": "r", "release_version": "2.0", "query_map_base": 0, "tagger": "t",
              "stats": {"classes": 50, "images": n, "with_text": n, "with_keywords": n - len(no_kw),
                        "vocabulary_size": 3, "distinct_keywords": 3, "dropped_most_common": [],
                        "mean_keywords_per_image": 1.5, "own_class_top1_share": 0.5, "own_class_top5_share": 0.6,
                        "mean_top1_weight": 0.5, "label_weights": d},
              "problems": {"counts": {}}, "seconds": {}}
    text = markdown(report)
    assert f"top weight: p10 {d['top_weight']['p10']:.3f}" in text and "own-class weight" in text


def test_example_report_has_the_weight_distributions(mined_v1):
    d = schema.read_report(mined_v1)["stats"]["label_weights"]
    assert 0 < d["top_weight"]["p10"] <= d["top_weight"]["p50"] <= d["top_weight"]["p90"] <= 1
    assert d["own_class_weight"]["p50"] > 0
