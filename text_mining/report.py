"""The stage's report: counts as JSON and markdown, and the keyword frequency plot."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .problems import KINDS


def keyword_plot(df: np.ndarray, dropped_top: int, path: Path, kw_per_image: np.ndarray) -> None:
    """Keyword document frequency by rank (log scale), like the paper's long-tail histogram,
    beside the distribution of keywords per image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    ranks = np.arange(1, len(df) + 1)
    if len(df):
        a.bar(ranks, df, width=1.0, color="#3b75af", linewidth=0)
    a.set_yscale("log")
    if len(df) > 100:
        a.set_xscale("log")
    a.set_xlabel("keyword rank (vocabulary, by image count)")
    a.set_ylabel("images with the keyword (log)")
    a.set_title(f"Keyword frequency: {len(df)} keywords ({dropped_top} most common dropped)")
    if len(kw_per_image):
        hi = int(kw_per_image.max()) if len(kw_per_image) else 0
        b.hist(kw_per_image, bins=np.arange(0, min(hi, 60) + 2) - 0.5, color="#d9822b")
    b.set_yscale("log")
    b.set_xlabel("keywords per image")
    b.set_ylabel("images (log)")
    mean = float(kw_per_image.mean()) if len(kw_per_image) else 0.0
    b.set_title(f"Keywords per image (mean {mean:.2f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


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
