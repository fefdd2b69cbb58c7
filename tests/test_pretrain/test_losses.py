"""The WT-Set / LW-Set losses and targets against values computed by hand (math, not torch)."""
import math

import pytest
import torch

from pretrain.config import LossConfig
from pretrain.losses import (AsymmetricLoss, BinaryCrossEntropy, SoftTargetCrossEntropy, batch_targets,
                             build_loss, dense_targets)
from pretrain.metrics import precision_at_k

Z = [[1.0, 2.0, 3.0, 0.0], [0.5, -1.0, 0.0, 2.0]]


def log_softmax(row):
    lse = math.log(sum(math.exp(v) for v in row))
    return [v - lse for v in row]


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def packed(lists, weights=None):
    ids = torch.tensor([i for ls in lists for i in ls], dtype=torch.int32)
    off = torch.tensor([0] + list(torch.cumsum(torch.tensor([len(x) for x in lists]), 0)), dtype=torch.int64)
    w = None if weights is None else torch.tensor([v for ws in weights for v in ws])
    return ids, off, w


def test_dense_targets_spread_the_mass_over_the_keywords():
    ids, off, _ = packed([[1, 2], [3], []])
    t = dense_targets(ids, off, 4)
    assert t.tolist() == [[0, 0.5, 0.5, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    ids, off, w = packed([[2, 0]], [[0.75, 0.25]])
    assert dense_targets(ids, off, 4, weights=w).tolist() == [[0.25, 0, 0.75, 0]]
    with pytest.raises(ValueError, match="out of range"):
        dense_targets(*packed([[4]])[:2], 4)


def test_soft_target_cross_entropy_is_the_papers_wt_loss():
    # L = -(1/|P|) sum_{k in P} log softmax(z)_k, averaged over images
    ids, off, _ = packed([[1, 2], [3]])
    loss = SoftTargetCrossEntropy()(torch.tensor(Z), dense_targets(ids, off, 4))
    a, b = log_softmax(Z[0]), log_softmax(Z[1])
    expected = (-(a[1] + a[2]) / 2 + -b[3]) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_weighted_cross_entropy_is_the_papers_lw_loss():
    # L = -sum_k w_k log softmax(z)_k with sum_k w_k = 1
    ids, off, w = packed([[2, 0, 3], [1]], [[0.5, 0.3, 0.2], [1.0]])
    loss = build_loss(LossConfig(name="weighted_ce"))(torch.tensor(Z), dense_targets(ids, off, 4, weights=w))
    a, b = log_softmax(Z[0]), log_softmax(Z[1])
    expected = (-(0.5 * a[2] + 0.3 * a[0] + 0.2 * a[3]) + -b[1]) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_images_without_targets_count_as_zero():
    """The batch mean divides by the batch size, so that accumulation is exact."""
    ids, off, _ = packed([[1, 2], []])
    for loss_fn in (SoftTargetCrossEntropy(), BinaryCrossEntropy(), AsymmetricLoss()):
        both = loss_fn(torch.tensor(Z), dense_targets(ids, off, 4))
        first = loss_fn(torch.tensor(Z[:1]), dense_targets(*packed([[1, 2]])[:2], 4))
        assert both.item() == pytest.approx(first.item() / 2, rel=1e-6)


def test_binary_cross_entropy():
    ids, off, _ = packed([[1, 2], [3]])
    loss = BinaryCrossEntropy()(torch.tensor(Z), dense_targets(ids, off, 4))
    pos = [{1, 2}, {3}]
    per = [sum(-math.log(sigmoid(v)) if k in pos[i] else -math.log(1 - sigmoid(v)) for k, v in enumerate(row))
           for i, row in enumerate(Z)]
    assert loss.item() == pytest.approx(sum(per) / 2, rel=1e-6)


def test_asymmetric_loss_matches_ridnik_equations():
    gn, gp, m = 4.0, 1.0, 0.05
    ids, off, _ = packed([[1, 2], [3]])
    loss = AsymmetricLoss(gamma_neg=gn, gamma_pos=gp, clip=m)(torch.tensor(Z), dense_targets(ids, off, 4))
    pos = [{1, 2}, {3}]
    per = []
    for i, row in enumerate(Z):
        total = 0.0
        for k, v in enumerate(row):
            p = sigmoid(v)
            if k in pos[i]:
                total += -((1 - p) ** gp) * math.log(p)
            else:
                pm = max(p - m, 0.0)
                total += -(pm ** gn) * math.log(1 - pm)
        per.append(total)
    assert loss.item() == pytest.approx(sum(per) / 2, rel=1e-5)
    # defaults are the paper's
    asl = build_loss(LossConfig(name="asl"))
    assert (asl.gamma_neg, asl.gamma_pos, asl.clip) == (4.0, 0.0, 0.05)


def test_batch_targets_from_a_loader_batch():
    kw_ids, kw_off, _ = packed([[0, 3], [1]])
    l_ids, l_off, l_w = packed([[2], [0, 1]], [[1.0], [0.6, 0.4]])
    batch = {"keyword_ids": kw_ids, "keyword_offsets": kw_off, "label_ids": l_ids, "label_offsets": l_off,
             "label_weights": l_w}
    assert batch_targets(batch, "keywords", 4, "cpu").tolist() == [[0.5, 0, 0, 0.5], [0, 1, 0, 0]]
    got = batch_targets(batch, "weights", 3, "cpu")
    assert torch.allclose(got, torch.tensor([[0, 0, 1.0], [0.6, 0.4, 0]]))
    with pytest.raises(ValueError, match="out of range"):
        batch_targets(batch, "keywords", 3, "cpu")


def test_precision_at_k():
    logits = torch.tensor([[0.9, 0.1, 0.8, 0.0], [0.0, 0.2, 0.1, 0.3], [1.0, 0.0, 0.0, 0.0]])
    ids, off, _ = packed([[0, 1], [3], []])
    p = precision_at_k(logits, dense_targets(ids, off, 4), [1, 2])
    assert p[0].item() == 2                       # images with labels
    assert p[1].item() == pytest.approx(1 + 1)    # top-1: 0 in {0,1}; 3 in {3}
    assert p[2].item() == pytest.approx(0.5 + 0.5)  # top-2: {0,2} -> 1/2; {3,1} -> 1/2


def keyword_batch(lists):
    ids, off, _ = packed(lists)
    return {"keyword_ids": ids, "keyword_offsets": off}


def test_soft_ce_sum_is_the_slides_sum_over_keywords():
    """The slide: the loss sums the cross entropies of the image's keywords,
    L = -sum_{k in P} log softmax(z)_k (batch mean over images); `mean` divides each by |P|."""
    batch = keyword_batch([[1, 2], [3]])
    a, b = log_softmax(Z[0]), log_softmax(Z[1])
    for reduction, expected in (("sum", (-(a[1] + a[2]) + -b[3]) / 2),
                                ("mean", (-(a[1] + a[2]) / 2 + -b[3]) / 2)):
        cfg = LossConfig(name="soft_ce", reduction=reduction)
        loss = build_loss(cfg)(torch.tensor(Z), batch_targets(batch, "keywords", 4, "cpu", cfg.reduction))
        assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_soft_ce_sum_weighs_an_image_by_its_number_of_keywords():
    z = torch.zeros(2, 16)   # uniform logits: every keyword costs log 16
    batch = keyword_batch([list(range(8)), [9]])
    per_image = []
    for reduction in ("sum", "mean"):
        t = batch_targets(batch, "keywords", 16, "cpu", reduction)
        loss = build_loss(LossConfig(reduction=reduction))
        per_image.append([loss(z[i:i + 1], t[i:i + 1]).item() for i in range(2)])
    (s8, s1), (m8, m1) = per_image
    assert s8 / s1 == pytest.approx(8.0) and m8 / m1 == pytest.approx(1.0)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_soft_ce_gradient_accumulation_stays_exact(reduction):
    """Two micro-batches of 2 (each a batch mean, then averaged) give the gradient of the batch of 4."""
    torch.manual_seed(0)
    z = torch.randn(4, 6)
    batch = keyword_batch([[0, 1, 2], [3], [], [4, 5]])
    t = batch_targets(batch, "keywords", 6, "cpu", reduction)
    loss = build_loss(LossConfig(reduction=reduction))
    whole = z.clone().requires_grad_(True)
    loss(whole, t).backward()
    parts = z.clone().requires_grad_(True)
    (loss(parts[:2], t[:2]) / 2 + loss(parts[2:], t[2:]) / 2).backward()
    assert torch.allclose(whole.grad, parts.grad, atol=1e-7)


def test_reduction_sum_is_refused_where_it_changes_nothing():
    from webtag.config import ConfigError
    with pytest.raises(ConfigError, match="reduction"):
        LossConfig(name="bce", reduction="sum")


def test_multilabel_soft_margin_is_ml_gcns_loss():
    """ML-GCN trains with torch's MultiLabelSoftMarginLoss: the mean over the C labels of the
    per-label logistic loss (``bce`` sums over labels: C times larger)."""
    torch.manual_seed(1)
    z = torch.randn(3, 5)
    batch = keyword_batch([[0, 4], [2], [1, 3]])
    t = batch_targets(batch, "keywords", 5, "cpu")
    ours = build_loss(LossConfig(name="multilabel_soft_margin"))(z, t)
    theirs = torch.nn.MultiLabelSoftMarginLoss()(z, (t > 0).float())
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    bce = build_loss(LossConfig(name="bce"))(z, t)
    assert bce.item() == pytest.approx(5 * ours.item(), rel=1e-6)
