"""The WebVision protocol's pieces against hand computations: balanced metrics, the weighted
k-NN of DINO's evaluation (a re-typed loop), the linear probe, the submission's list checks."""
import json
import math

import pytest
import torch

from finetune.knn import knn_evaluate, knn_scores, linear_probe, probe_evaluate
from finetune.metrics import ClassificationMeter
from finetune.submission import SubmissionError, check_complete, list_name


def test_balanced_metrics_on_a_hand_made_case():
    # 6 classes; class 3 has images, classes 4 and 5 none (absent: out of the balanced mean)
    scores = torch.tensor([
        [9, 8, 0, 0, 0, 0],    # true 0: top-1 right
        [8, 9, 0, 0, 0, 0],    # true 0: wrong, in the top 5
        [0, 1, 2, 3, 4, 9],    # true 0: wrong, 0 is 6th: not in the top 5
        [0, 9, 0, 0, 0, 0],    # true 1: right
        [0, 0, 1, 9, 0, 0],    # true 2: wrong, 2 in the top 5
        [0, 0, 0, 9, 0, 0],    # true 3: right
        [5, 5, 5, 5, 5, 5],    # unlabelled (a test image): not counted
    ], dtype=torch.float32)
    m = ClassificationMeter(6)
    m.update(scores, torch.tensor([0, 0, 0, 1, 2, 3, -1]))
    r = m.result()
    assert r["images"] == 6
    assert r["top1"] == pytest.approx(3 / 6) and r["top5"] == pytest.approx(5 / 6)
    # per class top-1: 1/3, 1, 0, 1 -> mean 7/12; top-5: 2/3, 1, 1, 1 -> mean 11/12
    assert r["top1_balanced"] == pytest.approx((1 / 3 + 1 + 0 + 1) / 4)
    assert r["top5_balanced"] == pytest.approx((2 / 3 + 1 + 1 + 1) / 4)
    assert r["classes_evaluated"] == 4 and r["classes_absent"] == 2
    rows = {row["class_id"]: row for row in m.per_class()}
    assert sorted(rows) == [0, 1, 2, 3] and rows[0]["count"] == 3
    assert rows[0]["top1"] == pytest.approx(1 / 3) and rows[2]["top5"] == 1.0


def dino_reference(train, train_y, test, test_y, k, T, C):
    """DINO's eval_knn.knn_classifier re-typed as plain loops: cosine similarity, the k nearest
    training images vote exp(sim / T) for their class; top-1 / top-5 counts over the classes
    sorted by votes, a class without a vote never counted (ties of unvoted classes are arbitrary in DINO)."""
    def norm(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]
    train = [norm(v) for v in train.tolist()]
    top1 = top5 = 0
    for q, y in zip(test.tolist(), test_y.tolist()):
        q = norm(q)
        sims = sorted(((sum(a * b for a, b in zip(q, t)), i) for i, t in enumerate(train)), key=lambda s: -s[0])[:k]
        votes = [0.0] * C
        for s, i in sims:
            votes[train_y[i]] += math.exp(s / T)
        order = sorted(range(C), key=lambda c: -votes[c])
        top1 += order[0] == y
        top5 += y in order[:5] and votes[y] > 0
    return top1 / len(test_y), top5 / len(test_y), votes


def test_knn_matches_the_dino_reference():
    g = torch.Generator().manual_seed(0)
    C, D = 7, 16
    centres = torch.randn(C, D, generator=g)
    train_y = torch.randint(0, C, (120,), generator=g)
    train = centres[train_y] + 1.5 * torch.randn(120, D, generator=g)
    test_y = torch.randint(0, C, (40,), generator=g)
    test = centres[test_y] + 1.5 * torch.randn(40, D, generator=g)
    for k in (1, 5, 20):
        ref1, ref5, last_votes = dino_reference(train, train_y.tolist(), test, test_y, k, 0.07, C)
        r = knn_evaluate(train, train_y, test, test_y, [k], 0.07, C)[k].result()
        assert r["top1"] == pytest.approx(ref1) and r["top5"] == pytest.approx(ref5)
        votes = torch.cat(list(knn_scores(train, train_y, test, k, 0.07, C, chunk=7)))
        ref = torch.tensor(last_votes, dtype=votes.dtype)
        assert torch.equal(torch.isinf(votes[-1]), ref == 0)
        assert torch.allclose(votes[-1][ref > 0], ref[ref > 0], rtol=1e-4)
    assert 0 < ref1 < 1   # a case where the neighbours do not all agree


def test_knn_leaves_out_unlabelled_training_images():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    votes = next(knn_scores(train, torch.tensor([0, 1, -1]), torch.tensor([[1.0, 0.05]]), k=3, T=0.07, num_classes=2))
    assert votes.shape == (1, 2) and votes[0, 0] > votes[0, 1] > 0   # two neighbours left, one per class


def test_linear_probe_separates_separable_classes():
    g = torch.Generator().manual_seed(1)
    C, D = 5, 8
    centres = torch.eye(C, D) * 4
    y = torch.arange(C).repeat(30)
    x = centres[y] + 0.3 * torch.randn(len(y), D, generator=g)
    head = linear_probe(x, y, C, epochs=100, batch_size=32, seed=0)
    r = probe_evaluate(head, x, y, C).result()
    assert r["top1"] == 1.0 and r["top1_balanced"] == 1.0
    untrained = probe_evaluate(linear_probe(x, y, C, epochs=0, seed=0), x, y, C).result()
    assert untrained["top1"] < 0.9


def test_list_names_and_the_count_check(tmp_path):
    assert list_name({"path": "val_images_256/val000001.jpg"}) == "val000001.jpg"   # older shards
    assert list_name({"path": "test000007.jpg"}) == "test000007.jpg"
    split = tmp_path / "test"
    split.mkdir()
    (split / "report.json").write_text(json.dumps({"samples": 3, "skipped": 1, "list_entries": 4}))
    assert check_complete(split, [0, 1, 2, 3]) == 4
    with pytest.raises(SubmissionError, match=r"1 of its 4 images have no prediction \(list lines 3"):
        check_complete(split, [0, 1, 3])


def test_knn_classes_are_the_shards_classes_not_a_keyword_head():
    from finetune.knn_eval import class_count
    labels = torch.tensor([0, 3, 7, 2])
    assert class_count(labels, {"num_classes": 106, "target": "keywords"}) == 8     # WT-Set head
    assert class_count(labels, {"num_classes": 8, "target": "weights"}) == 8
    assert class_count(labels, {"num_classes": 10, "target": "class"}) == 10        # a finetuned head
    assert class_count(labels, {"num_classes": None}) == 8                          # --checkpoint none
