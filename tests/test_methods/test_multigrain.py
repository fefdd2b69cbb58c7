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


# ---- the authors' code (facebookresearch/multigrain, multigrain/modules/margin.py), re-typed here
# to compare with: DistanceWeightedSampling's weights and MarginLoss.forward ------------------------
def reference_weights(x: torch.Tensor, target: torch.Tensor, cutoff=0.5, nonzero_loss_cutoff=1.4) -> np.ndarray:
    n, c = x.shape
    square = torch.sum(x ** 2.0, dim=1, keepdim=True)
    distance_square = square + square.t() - (2.0 * torch.matmul(x, x.t()))
    distance = torch.sqrt(distance_square + torch.eye(n, dtype=x.dtype, device=x.device))
    distance = torch.clamp(distance, min=cutoff)
    log_weights = ((2.0 - float(c)) * torch.log(distance)
                   - (float(c - 3) / 2) * torch.log(1.0 - 0.25 * (distance ** 2.0)))
    weights = torch.exp(log_weights - log_weights.max())
    unequal = target.view(-1, 1)
    unequal = (unequal != unequal.t())
    weights = weights * (unequal & (distance < nonzero_loss_cutoff)).float()
    weights = weights / torch.sum(weights, dim=1, keepdim=True)
    np_weights = weights.detach().cpu().numpy()
    unequal_np = unequal.cpu().numpy()
    rows = []
    for i in range(n):
        if np.isnan(np_weights[i].sum()):  # 0 samples within cutoff, sample uniformly
            w = unequal_np[i].astype(float)
            w /= w.sum()
        else:
            w = np_weights[i]
        rows.append(w)
    return np.stack(rows)


def reference_margin(anchor, negative, positive, beta, margin=0.2, eps=1e-8):
    d_ap = torch.sqrt(torch.sum((positive - anchor) ** 2, dim=1) + eps)
    d_an = torch.sqrt(torch.sum((negative - anchor) ** 2, dim=1) + eps)
    pos_loss = torch.clamp(d_ap - beta + margin, min=0.0)
    neg_loss = torch.clamp(beta - d_an + margin, min=0.0)
    pair_cnt = float(torch.sum((pos_loss > 0.0) + (neg_loss > 0.0)).item())
    return (torch.sum(pos_loss + neg_loss)) / max(pair_cnt, 1.0)


def ra_batch(images, copies, dim, seed, spread=0.3):
    """Repeated-augmentation-like embeddings: ``copies`` noisy copies of ``images`` random
    directions, L2-normalised."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(images, dim, generator=g)
    e = centres.repeat_interleave(copies, 0)
    e = e + spread * centres.norm(dim=1).mean() / dim ** 0.5 * torch.randn(e.shape, generator=g)
    return torch.nn.functional.normalize(e, dim=1), torch.arange(images).repeat_interleave(copies)


@pytest.mark.parametrize("dim", [16, 128, 2048])
def test_reference_sampling_probabilities_are_the_authors(dim):
    from pretrain.multigrain import reference_probabilities
    e, inst = ra_batch(12, 3, dim, seed=dim)
    ours = reference_probabilities(e, inst[:, None] != inst[None, :]).numpy()
    theirs = reference_weights(e, inst)
    assert np.allclose(ours, theirs, atol=1e-6)
    if dim == 2048:   # every row underflows against the one global maximum: uniform over negatives
        uniform = (inst[:, None] != inst[None, :]).float().numpy()
        assert np.allclose(theirs, uniform / uniform.sum(axis=1, keepdims=True))


def test_at_2048_d_stable_mines_the_nearest_negative_and_reference_does_not():
    from pretrain.multigrain import reference_probabilities, stable_probabilities
    e, inst = ra_batch(16, 2, 2048, seed=7, spread=1.5)
    neg = inst[:, None] != inst[None, :]
    d = torch.cdist(e, e).masked_fill(~neg, float("inf"))
    nearest = d.argmin(dim=1)
    rows = torch.arange(len(inst))
    p_stable = stable_probabilities(e, neg)[rows, nearest]
    p_reference = reference_probabilities(e, neg)[rows, nearest]
    assert p_stable.mean() > 0.5                                  # mostly the nearest negative
    assert torch.allclose(p_reference, torch.full_like(p_reference, 1 / 30))   # uniform over 30 negatives


def test_m_minus_one_negatives_per_anchor_without_replacement():
    from pretrain.multigrain import reference_probabilities, sample_negatives
    e, inst = ra_batch(8, 4, 32, seed=3)
    neg = inst[:, None] != inst[None, :]
    counts = (~neg).sum(dim=1) - 1                        # m - 1 = 3 positives each
    g = torch.Generator().manual_seed(0)
    drawn = sample_negatives(reference_probabilities(e, neg), counts, g).view(len(inst), 3)
    for i, row in enumerate(drawn.tolist()):
        assert len(set(row)) == 3 and all(inst[j] != inst[i] for j in row)
    # fewer candidates than draws: with replacement, as the reference falls back
    probs = torch.tensor([[0.0, 1.0, 0.0]])
    assert sample_negatives(probs, torch.tensor([2]), g).tolist() == [1, 1]


def test_margin_normaliser_counts_triplets_as_the_reference():
    from pretrain.multigrain import margin_terms
    g = torch.Generator().manual_seed(5)
    a, p, n = (torch.nn.functional.normalize(torch.randn(40, 8, generator=g), dim=1) for _ in range(3))
    beta = torch.tensor(1.2)
    d_ap = torch.sqrt(((p - a) ** 2).sum(dim=1) + 1e-8)
    d_an = torch.sqrt(((n - a) ** 2).sum(dim=1) + 1e-8)
    both = ((d_ap - beta + 0.2 > 0) & (beta - d_an + 0.2 > 0)).sum()
    assert both > 0                                   # the case where counting pairs would differ
    assert margin_terms(d_ap, d_an, beta, 0.2).item() == pytest.approx(reference_margin(a, n, p, beta).item(), rel=1e-6)


@pytest.mark.parametrize("sampling", ["reference", "stable"])
def test_margin_loss_triplets_at_2048_d(sampling):
    """The whole loss on a 2048-d batch: one triplet per positive pair, the value between the
    reference's margin loss over the triplets with the farthest and the nearest negatives."""
    e, inst = ra_batch(6, 2, 2048, seed=11)
    beta = torch.tensor(1.2)
    loss = MarginLoss(sampling=sampling, learn_beta=False)(e, inst, torch.Generator().manual_seed(0)).item()
    neg = inst[:, None] != inst[None, :]
    d = torch.cdist(e, e)
    a = torch.arange(12)
    p = a ^ 1                                         # the other copy
    bounds = [reference_margin(e[a], e[d.masked_fill(~neg, fill).argmin(1) if fill > 0 else
                                       d.masked_fill(~neg, fill).argmax(1)], e[p], beta).item()
              for fill in (float("inf"), -1.0)]
    assert min(bounds) - 1e-6 <= loss <= max(bounds) + 1e-6
