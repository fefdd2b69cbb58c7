"""Retrieval mAP on a tiny hand-made gallery, and the multi-label metrics on hand-made scores."""
import numpy as np
import pytest

from finetune.metrics import average_precision, multilabel_metrics
from finetune.retrieval import evaluate_retrieval, retrieve


def test_average_precision_by_hand():
    # ranking: R N R N -> precisions at the relevant ranks 1/1 and 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0], bool)) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(average_precision(np.array([0.1]), np.array([False])))


def test_retrieval_map_on_a_hand_made_gallery():
    # gallery: two class-0 images near the x axis, two class-1 images near the y axis
    gallery = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.9]])
    g_cls = np.array([0, 0, 1, 1])
    queries = np.array([[1.0, 0.05], [0.6, 0.8]])   # a clear class 0; a class-1 query closer to... see below
    q_cls = np.array([0, 1])
    top, _ = retrieve(queries, gallery, k=4)
    assert top[0].tolist()[:2] == [0, 1]
    # query 1 (0.6, 0.8) ranks: (0.2,0.9) .92..., (0,1) .8, (0.9,0.1) .62, (1,0) .6 -> R R N N -> AP 1
    r = evaluate_retrieval(queries, q_cls, gallery, g_cls, k=2)
    assert r["mAP"] == pytest.approx(1.0) and r["precision@2"] == pytest.approx(1.0)
    # a query of class 1 placed among class 0: ranks N N R R -> AP = (1/3 + 2/4) / 2
    r = evaluate_retrieval(np.array([[1.0, 0.02]]), np.array([1]), gallery, g_cls, k=2)
    assert r["mAP"] == pytest.approx((1 / 3 + 2 / 4) / 2) and r["precision@2"] == 0.0
    # queries = gallery: an image is not its own neighbour
    r = evaluate_retrieval(gallery, g_cls, gallery, g_cls, k=1, exclude=np.arange(4))
    assert r["precision@1"] == pytest.approx(1.0)


def test_multilabel_metrics_by_hand():
    scores = np.array([[0.9, 0.2, 0.6], [0.1, 0.8, 0.7], [0.4, 0.3, 0.2]])
    targets = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0]])
    m = multilabel_metrics(scores, targets, threshold=0.5)
    # class 0: ranking .9(R) .4(R) .1 -> AP 1; class 1: .8(R) -> 1; class 2: .7(N) .6(R) -> 1/2
    assert m["mAP"] == pytest.approx((1 + 1 + 0.5) / 3)
    # predictions >= .5: (0,0) (0,2) (1,1) (1,2); true positives (0,0) (0,2) (1,1)
    assert m["OP"] == pytest.approx(3 / 4) and m["OR"] == pytest.approx(3 / 4)
    # per class: P = [1/1, 1/1, 1/2], R = [1/2, 1/1, 1/1]
    assert m["CP"] == pytest.approx((1 + 1 + 0.5) / 3) and m["CR"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert m["CF1"] == pytest.approx(2 * m["CP"] * m["CR"] / (m["CP"] + m["CR"]))
