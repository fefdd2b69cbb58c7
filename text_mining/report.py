"""The stage's report: counts as JSON and markdown, the label-weight distributions and the
keyword frequency plot."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .problems import KINDS
from .spill import OrderStatistics


def keyword_plot(df: np.ndarray, dropped_top: int, path: Path, kw_hist: np.ndarray) -> None:
    """Keyword document frequency by rank (log scale), like the paper's long-tail histogram,
    beside the distribution of keywords per image (``kw_hist[k]``: the images with k keywords)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    if len(df):
        # one filled step polygon, not a bar per keyword: 8.8k bars took 10 s of the merge step
        # (and matplotlib's stairs patch 1.7 s at 26k keywords, fill_between 0.2 s)
        a.fill_between(np.arange(1, len(df) + 2), np.append(df, df[-1]), step="post", color="#3b75af",
                       linewidth=0)
    a.set_yscale("log")
    if len(df) > 100:
        a.set_xscale("log")
    a.set_xlabel("keyword rank (vocabulary, by image count)")
    a.set_ylabel("images with the keyword (log)")
    a.set_title(f"Keyword frequency: {len(df)} keywords ({dropped_top} most common dropped)")
    kw_hist = np.trim_zeros(np.asarray(kw_hist, dtype=np.int64), "b")
    n_images = int(kw_hist.sum())
    if n_images:
        hi = len(kw_hist) - 1
        b.hist(np.arange(len(kw_hist)), weights=kw_hist, bins=np.arange(0, min(hi, 60) + 2) - 0.5, color="#d9822b")
    b.set_yscale("log")
    b.set_xlabel("keywords per image")
    b.set_ylabel("images (log)")
    mean = int(kw_hist @ np.arange(len(kw_hist))) / n_images if n_images else 0.0
    b.set_title(f"Keywords per image (mean {mean:.2f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


PERCENTILES = (10, 25, 50, 75, 90)


def _percentiles(x: np.ndarray) -> dict:
    return {f"p{q}": round(float(np.percentile(x, q)), 4) if len(x) else None for q in PERCENTILES}


def _weight_values(f: pq.ParquetFile):
    """Per row group: (top weight, own-class weight, own-class weight of images without keywords)."""
    for g in range(f.num_row_groups):
        t = f.read_row_group(g, columns=["class_id", "keyword_ids", "label_ids", "label_weights"])
        w = t["label_weights"].combine_chunks()
        ids = t["label_ids"].combine_chunks()
        n = len(t)
        lengths = pc.list_value_length(w).to_numpy(zero_copy_only=False)
        flat_w = pc.list_flatten(w).to_numpy(zero_copy_only=False).astype(np.float64)
        flat_ids = pc.list_flatten(ids).to_numpy(zero_copy_only=False)
        row = np.repeat(np.arange(n), lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        top = np.zeros(n)
        top[lengths > 0] = flat_w[starts[lengths > 0]]     # lists are weight-descending
        cls = t["class_id"].to_numpy()
        own = np.bincount(row, weights=flat_w * (flat_ids == cls[row]), minlength=n)
        kw = pc.list_value_length(t["keyword_ids"]).to_numpy(zero_copy_only=False)
        yield top, own, own[kw == 0]


NAMES = ("top_weight", "own_class_weight", "own_class_weight_without_keywords")


def weight_distribution(images_file: Path) -> dict:
    """Percentiles over the images of ``images.parquet`` of the top label weight and of the weight
    on the image's own (query) class (0 when it is not among its labels), for all images and for
    those without vocabulary keywords (whose weights are their query's neighbourhood only).
    Read one row group at a time, twice: the percentiles are np.percentile's, found exactly from
    histograms of the weights' float32 bits (spill.OrderStatistics), so memory does not grow
    with the images (a weight float32 cannot hold falls back to holding the values)."""
    f = pq.ParquetFile(images_file)
    stats = [OrderStatistics() for _ in NAMES]
    for values in _weight_values(f):
        for s, x in zip(stats, values):
            s.add(x)
    if not all(s.exact for s in stats):
        held = [np.concatenate(v) if v else np.zeros(0) for v in zip(*_weight_values(f))] \
            if f.num_row_groups else [np.zeros(0)] * 3
        out = {name: _percentiles(x) for name, x in zip(NAMES, held)}
    else:
        for s in stats:
            s.need(PERCENTILES)
        for values in _weight_values(f):
            for s, x in zip(stats, values):
                s.refine(x)
        out = {name: {f"p{q}": round(s.percentile(q), 4) if s.n else None for q in PERCENTILES}
               for name, s in zip(NAMES, stats)}
    return {**out, "images_without_keywords": int(stats[2].n)}


def _dist_line(name: str, d: dict) -> str:
    return f"  - {name}: " + ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} -" for k, v in d.items())


def markdown(report: dict) -> str:
    s = report["stats"]
    lines = [
        "# Text mining report", "",
        f"- release: `{report['webvision']}` (WebVision {report['release_version']} layout, "
        f"query map {report['query_map_base']}-based), {s['classes']} classes",
        f"- part-of-speech filter: **{report['tagger']}**",
        f"- images: {s['images']} ({s['with_text']} with text, {s['with_keywords']} with vocabulary keywords)",
        f"- vocabulary: {s['vocabulary_size']} keywords of {s['distinct_keywords']} distinct; "
        f"most common dropped: {', '.join(s['dropped_most_common']) or 'none'}",
        f"- mean keywords per image: {s['mean_keywords_per_image']:.2f}",
        f"- label weights: own class ranked first for {s['own_class_top1_share']:.1%} of images, "
        f"in the top 5 for {s['own_class_top5_share']:.1%}; mean top-1 weight {s['mean_top1_weight']:.3f}",
    ]
    dist = s.get("label_weights")
    if dist:   # percentiles over the images
        lines += [_dist_line("top weight", dist["top_weight"]),
                  _dist_line("own-class weight", dist["own_class_weight"]),
                  _dist_line(f"own-class weight of the {dist['images_without_keywords']} images without keywords",
                             dist["own_class_weight_without_keywords"])]
    lines += [
        "", "## Bad input", "",
    ]
    counts = report["problems"]["counts"]
    if not counts:
        lines.append("None.")
    else:
        lines += ["| kind | count | meaning | files (first) |", "|---|---|---|---|"]
        for kind, n in counts.items():
            files = list(report["problems"]["files"].get(kind, {}))
            shown = ", ".join(f"`{f}`" for f in files[:3]) + (f" (+{len(files) - 3})" if len(files) > 3 else "")
            lines.append(f"| {kind} | {n} | {KINDS[kind]} | {shown} |")
        lines += ["", "Examples:", ""]
        for kind, ex in report["problems"]["examples"].items():
            lines += [f"- {kind}: {e}" for e in ex[:5]]
    lines += ["", "## Time (seconds)", ""]
    lines += [f"- {k}: {v}" for k, v in report["seconds"].items()]
    return "\n".join(lines) + "\n"
