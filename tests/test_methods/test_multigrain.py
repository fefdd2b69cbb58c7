"""MultiGrain: GeM limits, the margin loss and the sampling distribution against their
definitions, and PCA whitening."""
import numpy as np
import pytest
import torch

from finetune.whitening import PCAWhitening
from pretrain.multigrain import GeM, MarginLoss, distance_weights, joint_loss


def test_gem_limits():
    x = torch.rand(2, 5, 7, 7) + 0.01
    assert torch.allclose(GeM(p=1.0)(x), x.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(GeM(p=200.0)(x), x.amax(dim=(2, 3)), rtol=0.03)
    p3 = GeM(p=3.0)(x)
    assert torch.allclose(p3, x.pow(3).mean(dim=(2, 3)).pow(1 / 3), atol=1e-6)
    assert (x.mean(dim=(2, 3)) <= p3 + 1e-6).all() and (p3 <= x.amax(dim=(2, 3)) + 1e-6).all()
    g = GeM(p=3.0, learnable=True)
    g(x).sum().backward()
    assert g.p.grad is not None


def test_margin_loss_definition_on_a_hand_made_batch():
    """Items 0 and 1 are copies of one instance, item 2 another image: anchors 0 and 1 each have
    one positive and one possible negative (2), so the loss is fixed by the definition."""
    e = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, -0.6]])
    inst = torch.tensor([0, 0, 1])
    loss_fn = MarginLoss(alpha=0.2, beta=1.2, learn_beta=False, cutoff=0.0, nonzero_loss_cutoff=10.0)
    d01, d02, d12 = 0.8 ** 0.5, 0.4 ** 0.5, 2.0 ** 0.5
    pair_losses = [max(0, 0.2 + d01 - 1.2)] * 2 + [max(0, 0.2 - (d02 - 1.2)), max(0, 0.2 - (d12 - 1.2))]
    active = [v for v in pair_losses if v > 0]
    assert loss_fn(e, inst).item() == pytest.approx(sum(active) / len(active), rel=1e-5)
    # scaling an embedding changes nothing: the loss works on L2-normalised vectors
    assert loss_fn(e * torch.tensor([[3.0], [0.5], [2.0]]), inst).item() == pytest.approx(sum(active) / len(active), rel=1e-5)
    # no positive pair in the batch: zero loss, still differentiable
    x = torch.randn(3, 2, requires_grad=True)
    out = loss_fn(x, torch.tensor([0, 1, 2]))
    out.backward()
    assert out.item() == 0


def test_distance_weighted_sampling_follows_inverse_q():
    dim = 16
    d = torch.tensor([0.6, 0.9, 1.2, 1.39, 1.5])
    w = distance_weights(d, dim, cutoff=0.5, nonzero_loss_cutoff=1.4)
    q = d[:4] ** (dim - 2) * (1 - d[:4] ** 2 / 4) ** ((dim - 3) / 2)
    expected = (1 / q) / (1 / q).max()
    assert torch.allclose(w[:4] / w[:4].max(), expected, rtol=1e-4)
    assert w[4] == 0                                       # beyond 1.4: never sampled
    # empirical: negatives drawn with these weights follow them (chi-square)
    from scipy.stats import chisquare
    g = torch.Generator().manual_seed(1)
    draws = torch.multinomial(w[:4], 20000, replacement=True, generator=g)
    counts = torch.bincount(draws, minlength=4).numpy()
    probs = (w[:4] / w[:4].sum()).numpy()
    assert chisquare(counts, probs * counts.sum()).pvalue > 1e-3


def test_beta_is_learnable_and_joint_loss():
    loss_fn = MarginLoss()
    e = torch.randn(8, 16, requires_grad=True)
    inst = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    joint_loss(torch.tensor(1.0), loss_fn(e, inst), 0.5).backward()
    assert loss_fn.beta.grad is not None and e.grad is not None
    assert joint_loss(torch.tensor(2.0), torch.tensor(4.0), 0.5).item() == 3.0


def test_whitening_gives_identity_covariance_on_the_fitting_set(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 8)) @ rng.standard_normal((8, 8)) + 3.0
    w = PCAWhitening.fit(x)
    z = w.whiten(x)
    assert np.allclose(z.mean(axis=0), 0, atol=1e-8)
    assert np.allclose(np.cov(z, rowvar=False, bias=True), np.eye(8), atol=1e-4)
    out = w(x)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    w.save(tmp_path / "w.npz")
    assert np.allclose(PCAWhitening.load(tmp_path / "w.npz")(x), out)
    with pytest.raises(ValueError):
        PCAWhitening.fit(x[:1])
