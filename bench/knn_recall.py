"""Recall of the tag step's ivf KNN search against exact search, measured on a run's own data.

``knn_figure(out, cfg)`` samples images with keywords from the tag step's output, embeds them as
the tag step does (unit mean word vector), and searches the run's KNN reference set with both
``ivf`` (the run's coarse centroids, or centroids trained here when the run used ``exact``) and
``exact`` (faiss IndexFlatIP): recall@knn_k is the share of the exact neighbours that ivf also
returns, with the CPU time per image of each. bench/text_mining.py prints it after the steps.
"""
from __future__ import annotations

import resource
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from text_mining import knn  # noqa: E402
from text_mining.embed import mean_embeddings  # noqa: E402
from text_mining.tag import load_weighter  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def knn_figure(out: Path, cfg, sample: int = 2000, seed: int = 0) -> dict:
    """recall@knn_k of ivf vs exact on ``sample`` tagged images with keywords, and the CPU
    milliseconds per image of each search."""
    vocab = Path(out) / "_work" / "vocabulary"
    w_cfg = cfg.weights
    _, weighter = load_weighter(vocab, cfg)
    kw = []
    for f in sorted((Path(out) / "_work" / "tag").glob("part-*/images.parquet")):
        kw += [x for x in pq.read_table(f, columns=["keyword_ids"])["keyword_ids"].to_pylist() if x]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(kw), size=min(sample, len(kw)), replace=False)
    x = mean_embeddings([sorted(kw[i]) for i in pick], weighter.kw_vecs)
    centroids = weighter.centroids
    if centroids is None:   # the run searched exactly: the centroids its vocabulary step would train
        centroids = knn.train_centroids(weighter.ref, w_cfg.knn_lists or knn.auto_lists(len(weighter.ref)), w_cfg.seed)
    c = _cpu()
    exact = knn.NeighbourSearch(weighter.ref, "exact")
    ivf = knn.NeighbourSearch(weighter.ref, "ivf", centroids, w_cfg.knn_probe)
    build = _cpu() - c
    times = {}
    for name, s in (("exact", exact), ("ivf", ivf)):
        c = _cpu()
        s.search(x, w_cfg.knn_k + 1)
        times[name] = 1e3 * (_cpu() - c) / max(1, len(x))
    return {"recall": knn.knn_recall(ivf, exact, x, w_cfg.knn_k), "k": w_cfg.knn_k, "images": int(len(x)),
            "reference": int(len(weighter.ref)), "lists": int(len(centroids)), "probe": int(ivf.probe),
            "search": w_cfg.knn_search, "cpu_ms_per_image": times, "build_cpu_s": build}


def describe(fig: dict) -> str:
    return (f"KNN search (tag step, weights.knn_search {fig['search']}): ivf recall@{fig['k']} vs exact "
            f"{fig['recall']:.4f} on {fig['images']} images, {fig['reference']} reference images, "
            f"{fig['lists']} lists, probe {fig['probe']}; search CPU ms/image: ivf "
            f"{fig['cpu_ms_per_image']['ivf']:.3f}, exact {fig['cpu_ms_per_image']['exact']:.3f}")
