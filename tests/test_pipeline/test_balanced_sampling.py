"""Balanced sampling (``loader.sampling=balanced``): labels equally likely (chi-square against
uniform, classes and keywords), the cap on copies, the epoch's draws, copies a batch apart,
determinism, resume, loader-check's exposure lines."""
import subprocess
import sys
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import chisquare

from conftest import REPO
from pipeline import schema
from pipeline.loader import BadSamples, LoaderConfig, ShardLoader, WorkerPlan, merge_states, sample_stream
from pipeline.loader.balanced import balanced_factors, exposure, read_labels, relative_percentiles, solve_factors
from labelled_shards import write_labelled_shards
from webtag.config import ConfigError

COUNTS = [400, 120, 50, 20, 10]      # images per class
N_KW = 12


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Shards of 600 images: 5 classes of 400/120/50/20/10 and 1-3 keywords each out of 12 with
    Zipf-like frequencies (one tiny JPEG)."""
    root = tmp_path_factory.mktemp("balanced")
    rng = np.random.default_rng(1)
    cls = [c for c, n in enumerate(COUNTS) for _ in range(n)]
    rng.shuffle(cls)
    p = 1 / np.arange(1, N_KW + 1) ** 1.3
    kws = [sorted(set(rng.choice(N_KW, size=int(rng.integers(1, 4)), p=p / p.sum()).tolist())) for _ in cls]
    return write_labelled_shards(root, cls, kws, max_count=40, colour=(10, 200, 10))


def _stream(split, cfg, epochs):
    """The real (not padding) samples of ``epochs`` epochs of one stream over all shards."""
    loader = ShardLoader(split, cfg)
    plan = WorkerPlan(list(loader.sizes), 0, list(loader.sizes))
    quota = int(round(sum(loader.expected.values())))
    out = []
    for e in range(epochs):
        got = sample_stream(split, plan, quota, loader.repeat, 200, np.random.default_rng(e), BadSamples(1e9))
        out.append([s["labels"] for s, padding, _ in got if not padding])
    return loader, out


def test_classes_equally_likely_chi_square(labelled):
    split = labelled / "train"
    cfg = LoaderConfig(sampling="balanced", balance_over="class", balanced_cap=16, batch_size=8)
    _, epochs = _stream(split, cfg, epochs=10)
    hist = np.bincount([l["class_id"] for e in epochs for l in e], minlength=5)
    assert chisquare(hist).pvalue > 1e-3, hist                       # against uniform
    natural = np.array(COUNTS) * 10
    assert chisquare(natural).pvalue < 1e-12                         # the test can tell


def test_keywords_equally_likely_chi_square(labelled):
    """A draw of an image is for one of its keywords with probability (1/n_k)/s_i: the draws
    for each keyword are uniform."""
    split = labelled / "train"
    cfg = LoaderConfig(sampling="balanced", balance_over="keywords", balanced_cap=64, batch_size=8)
    _, epochs = _stream(split, cfg, epochs=10)
    man = pq.read_table(split / schema.MANIFEST_FILE, columns=["keyword_ids"])["keyword_ids"].to_pylist()
    n_k = np.bincount([k for ks in man for k in ks], minlength=N_KW)
    rng = np.random.default_rng(9)
    def attribute(labels):
        ks = np.asarray(labels["keyword_ids"])
        p = 1 / n_k[ks]
        return int(rng.choice(ks, p=p / p.sum()))
    drawn = [attribute(l) for e in epochs for l in e]
    hist = np.bincount(drawn, minlength=N_KW)
    assert chisquare(hist).pvalue > 1e-3, hist
    assert chisquare(n_k).pvalue < 1e-12                             # natural keyword counts are skewed
    # the expected exposure computed for loader-check says the same
    table = read_labels(split, set(schema.read_sizes(split)), "keywords")
    e = exposure(table, balanced_factors(table, 0, 64))
    assert e["draws_for"] == pytest.approx(np.full(N_KW, len(man) / N_KW), rel=1e-6)
    natural = relative_percentiles(exposure(table, np.ones(len(man)))["draws_for"])
    assert natural["p10"] < 0.5 and natural["p90"] > 1.5


def test_cap_on_copies_and_fixed_draws(labelled):
    split = labelled / "train"
    cfg = LoaderConfig(sampling="balanced", balanced_cap=3, epoch_draws=900, batch_size=8)
    loader, epochs = _stream(split, cfg, epochs=3)
    total = sum(float(r.sum()) for r in loader.repeat.values())
    assert total == pytest.approx(900)                               # the epoch's draws
    assert max(float(r.max()) for r in loader.repeat.values()) <= 3
    for e in epochs:
        per_image = Counter(l["index"] for l in e)
        assert max(per_image.values()) <= 3
    # with the cap binding the rare classes get less than uniform, the others make up the draws
    r = solve_factors(np.array([1.0, 1.0, 0.1, 0.1]), draws=8, cap=3)
    assert r.tolist() == pytest.approx([3, 3, 1, 1])
    with pytest.raises(ValueError, match="balanced_cap=3"):
        ShardLoader(split, LoaderConfig(sampling="balanced", balanced_cap=3, epoch_draws=601 * 3, batch_size=8))
    with pytest.raises(ConfigError, match="shuffle_buffer"):
        LoaderConfig(sampling="balanced", batch_size=64, shuffle_buffer=100)


def _epoch(split, cfg, world=1):
    """One epoch's batches of each rank (each loader closed: its workers would stream on)."""
    out = []
    for r in range(world):
        loader = ShardLoader(split, cfg, rank=r, world_size=world)
        out.append(list(loader))
        loader.close()
    return out


def test_batches_never_hold_two_copies_and_epoch_length_follows_draws(labelled):
    split = labelled / "train"
    base = dict(sampling="balanced", balanced_cap=8, batch_size=8, workers=2, shuffle_buffer=64,
                image_size=16, seed=2)
    for draws in (300, 1200):
        cfg = LoaderConfig(**base, epoch_draws=draws)
        batches = _epoch(split, cfg, world=2)
        n = sum(len(rank) for rank in batches) * 8
        # the plan's rounding: a batch per worker, and ranks dealt shards that differ by one shard's draws
        heaviest = max(ShardLoader(split, cfg).expected.values())   # (not iterated: no workers)
        assert draws <= n <= draws + 2 * (2 * 8 + heaviest), (n, heaviest)
        for rank in batches:
            for b in rank:
                idx = b["index"].tolist()
                assert len(idx) == len(set(idx)), idx
    # without the spread rule copies do meet in a batch at this cap: the check can fail
    loader = ShardLoader(split, LoaderConfig(**base, epoch_draws=1200))
    plan = WorkerPlan(list(loader.sizes), 150, list(loader.sizes))
    got = [s["__key__"] for s, _, _ in sample_stream(split, plan, 1200, loader.repeat, 64,
                                                     np.random.default_rng(0), BadSamples(1e9))]
    assert any(len(set(got[i:i + 8])) < 8 for i in range(0, len(got) - 8, 8))


def test_deterministic_and_resumable(labelled):
    split = labelled / "train"
    cfg = LoaderConfig(sampling="balanced", balanced_cap=4, batch_size=8, workers=2, shuffle_buffer=32,
                       image_size=16, seed=5)
    a = [b["index"].tolist() for b in _epoch(split, cfg)[0]]
    b = [b["index"].tolist() for b in _epoch(split, cfg)[0]]
    assert a == b
    loader = ShardLoader(split, cfg)
    half, first = len(loader) // 2, []
    for i, batch in enumerate(loader):
        first += [(int(x), bool(p)) for x, p in zip(batch["index"], batch["meta"].padding)]
        if i >= half and loader.consumed:      # stopped mid-epoch with some shards delivered
            break
    state = merge_states([loader.state_dict()])
    loader.close()
    assert state["consumed"]
    man = pq.read_table(split / schema.MANIFEST_FILE).to_pydict()
    shard_of = dict(zip(man["index"], man["shard"]))
    again = ShardLoader(split, cfg)
    again.load_state_dict(state)
    second = [int(x) for b in again for x, p in zip(b["index"], b["meta"].padding) if not p]
    again.close()
    assert not {shard_of[i] for i in second} & set(state["consumed"])   # no consumed shard read again
    copies = Counter([i for i, p in first if not p and shard_of[i] in state["consumed"]] + second)
    assert max(copies.values()) <= 4                                     # the cap holds across the resume


def test_loader_check_prints_label_exposure(labelled):
    out = subprocess.run([sys.executable, "-m", "pipeline", "loader-check", "--shards", str(labelled),
                          "--batch-size", "8", "--workers", "1", "--sampling", "balanced",
                          "balance_over=class", "image_size=16", "balanced_cap=16"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [l for l in out.stdout.splitlines() if "exposure" in l]
    assert any(l.startswith("label exposure (balanced") for l in lines), out.stdout
    assert any(l.startswith("label exposure (instance") for l in lines), out.stdout
    bal = next(l for l in lines if l.startswith("label exposure (balanced"))
    assert "p10 1.00" in bal and "p90 1.00" in bal
