"""``python -m text_mining inspect``: the static inspection report of a text-mining output.

    python -m text_mining inspect --labels MINED --webvision ROOT [--shards SHARDS] --out DIR

Writes ``DIR/index.html`` (opens from disk, no server, nothing from the internet), ``plots/*.png``,
``thumbs/<index>.jpg``, ``classes.csv`` (the per-class table) and ``inspect.json`` (a summary).
Numbers come from ``inspect_stats``; the page from ``inspect_html``; the thumbnails from a separate
process, ``python -m pipeline.thumbnails`` (text mining opens no image), reading the release's files
or, with ``--shards``, the train shards. The title/description excerpts of the sampled images are
read from the release's metadata (one record each); without ``--webvision`` there are none.
The folder appears complete or not at all; a previous report in DIR is replaced.
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from webtag.atomic import atomic_dir

from . import inspect_html, inspect_stats

log = logging.getLogger(__name__)
MARKER = "inspect.json"
THUMB_SIZE = 128


class InspectError(ValueError):
    """Bad arguments or input of ``inspect``: one line for the user."""


def plots(stats: inspect_stats.Stats, folder: Path) -> list[str]:
    """The overview plots as PNG files in ``folder``; their names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    made = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(folder / name, dpi=90, format="png")
        plt.close(fig)
        made.append(name)

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    df = np.sort(stats.keyword_df)[::-1]
    if len(df):
        a.plot(np.arange(1, len(df) + 1), df, color="#3b75af")
        a.set_xscale("log")
        a.set_yscale("log")
    a.set(title="Keyword frequency", xlabel="keyword rank", ylabel="images with it")
    kpi = stats.keywords_per_image
    b.hist(kpi, bins=np.arange(0, (int(kpi.max()) if len(kpi) else 0) + 2) - 0.5, color="#d9822b")
    b.set(title="Keywords per image", xlabel="keywords", ylabel="images")
    save(fig, "keywords.png")

    fig, ax = plt.subplots(figsize=(10, 3.6))
    counts = np.sort(stats.class_counts)[::-1]
    ax.bar(np.arange(len(counts)), counts, width=1.0, color="#3b75af", linewidth=0)
    ax.set(title="Images per class (long tail)", xlabel="class rank", ylabel="images")
    save(fig, "classes.png")

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    bins = np.linspace(0, 1, 21)
    a.hist(stats.top_weight, bins=bins, color="#4c9a2a")
    a.set(title="Top label weight", xlabel="weight", ylabel="images")
    b.hist(stats.own_weight, bins=bins, color="#9a2a4c")
    b.set(title="Weight of the image's own class", xlabel="weight", ylabel="images")
    save(fig, "weights.png")
    return made


def excerpts(webvision: Path | None, labels: Path, indices: list[int]) -> dict[int, str]:
    """index -> title and description of the sampled images: one pass over each meta list for
    their lines, then only the JSON files those lines name, each loaded once (grouped by file)."""
    if webvision is None or not indices:
        return {}
    import collections

    from webtag.config import load_config

    from .config import TextMiningConfig
    from .problems import Problems
    from .webvision import ImageRecord, Release

    cfg_file = labels / "config.yaml"
    cfg = load_config(TextMiningConfig, cfg_file if cfg_file.is_file() else None, [])
    release = Release(webvision, cfg.reader)
    wanted = sorted(set(indices))
    lines = []   # (json file, index, meta-list line, segment, line number)
    for seg in release.segments:
        lo, hi = seg.start, seg.start + seg.lines
        todo = [i for i in wanted if lo <= i < hi]
        if not todo or seg.metalist is None:
            continue
        pos = {i - lo: i for i in todo}
        last = max(pos)
        with open(seg.metalist, encoding="utf-8", errors="replace") as fh:
            for offset, mline in enumerate(fh):
                if offset in pos:
                    lines.append((mline.split(" ", 1)[0], pos[offset], mline, seg, offset + 1))
                    if offset == last:
                        break
    problems, cache = Problems("skip"), collections.OrderedDict()
    out: dict[int, str] = {}
    for _json, index, mline, seg, lineno in tqdm(sorted(lines, key=lambda x: (x[0], x[1])), desc="inspect: texts",
                                                 unit="img", disable=len(lines) < 1000):
        rec = ImageRecord(index, "", "", "", 0, 0)
        release._attach_meta(rec, mline, seg, lineno, problems, cache)   # the reader's own record rules
        out[index] = " | ".join(x for x in (rec.title, rec.description) if x)
    return out


def thumbnails(items: list[dict], webvision: Path | None, shards: Path | None, folder: Path) -> dict[int, str]:
    """Run the image side (``python -m pipeline.thumbnails``) on ``items``; index -> file name or
    why none."""
    folder.mkdir(parents=True, exist_ok=True)
    request = folder / "request.json"
    request.write_text(json.dumps({"items": items, "webvision": str(webvision) if webvision else None,
                                   "shards": str(shards) if shards else None, "out": str(folder),
                                   "size": THUMB_SIZE}), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "pipeline.thumbnails", str(request)],
                          capture_output=True, text=True)
    request.unlink()
    if proc.returncode != 0:
        raise InspectError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else
                           f"thumbnails failed with exit status {proc.returncode}")
    answer = folder / "thumbnails.json"
    made = {int(k): v for k, v in json.loads(answer.read_text(encoding="utf-8")).items()}
    answer.unlink()
    return made


def inspect(labels: str | Path, webvision: str | Path | None, out: str | Path, shards: str | Path | None = None,
            per_class: int = 6, per_keyword: int = 8, keywords_shown: int = 50, seed: int = 0) -> dict:
    """Write the report of ``labels`` into ``out``; its summary."""
    labels, out = Path(labels), Path(out)
    webvision = Path(webvision) if webvision else None
    shards = Path(shards) if shards else None
    if webvision is None and shards is None:
        raise InspectError("inspect needs --webvision ROOT or --shards SHARDS for the thumbnails")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InspectError(f"{out} exists and is not an inspection report: choose a new --out")
    steps = tqdm(total=5, desc="inspect", unit="step", disable=None)
    stats = inspect_stats.compute(labels, per_class=per_class, per_keyword=per_keyword,
                                  keywords_shown=keywords_shown, seed=seed)
    steps.update()
    rows = inspect_stats.sampled_rows(stats)
    idx, paths = stats.table["index"].to_pylist(), stats.table["path"].to_pylist()
    items = [{"index": idx[r], "path": paths[r]} for r in rows]
    texts = excerpts(webvision, labels, [it["index"] for it in items])
    steps.update()
    if out.exists():
        shutil.rmtree(out)
    with atomic_dir(out) as tmp:
        thumbs = thumbnails(items, webvision, shards, tmp / "thumbs")
        steps.update()
        made = plots(stats, tmp / "plots")
        steps.update()
        (tmp / "classes.csv").write_text(inspect_stats.class_table_csv(stats), encoding="utf-8")
        (tmp / "index.html").write_text(inspect_html.page(stats, texts, thumbs, made,
                                                          f"webtag inspection: {labels.name}", seed),
                                        encoding="utf-8")
        (tmp / MARKER).write_text(inspect_html.summary_json(stats, thumbs), encoding="utf-8")
        steps.update()
    steps.close()
    return json.loads((out / MARKER).read_text(encoding="utf-8"))
