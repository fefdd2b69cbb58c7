"""``python -m finetune report --run RUN``: a run's curves and its most confused classes, as PNG
plots and one static HTML page (``RUN/report/index.html``, nothing from the internet).

Curves from ``RUN/metrics.csv`` (any of ``loss``, ``lr``, ``images_per_s``, ``data_wait``,
``val_top1``/``val_top5`` and their ``_balanced`` forms; a column the run did not log is left
out). Confused class pairs from an evaluation JSON (``python -m finetune evaluate``: its
``confusions``, most frequent first; by default ``RUN/best/eval-val.json`` or ``RUN/eval-val.json``),
each shown with validation thumbnails of both classes, read from the evaluated split's shards
(the JSON's ``shards``) by ``pipeline.thumbnails``.
"""
from __future__ import annotations

import argparse
import csv
import html
import json
import math
import sys
from pathlib import Path

CURVES = (   # (file, title, columns)
    ("loss.png", "Training loss", ("loss",)),
    ("lr.png", "Learning rate", ("lr",)),
    ("images_per_s.png", "Images per second", ("images_per_s",)),
    ("data_wait.png", "Share of time waiting for data", ("data_wait",)),
    ("val.png", "Validation accuracy", ("val_top1", "val_top5", "val_top1_balanced", "val_top5_balanced")),
)


class ReportError(ValueError):
    """A run folder or evaluation file the report cannot use: one line for the user."""


def read_metrics(path: Path) -> dict[str, list[tuple[float, float]]]:
    """column -> (step, value) points of ``metrics.csv`` (empty cells skipped)."""
    if not path.is_file():
        raise ReportError(f"{path} does not exist: is --run a pretrain or finetune run folder?")
    series: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "step" not in (reader.fieldnames or []):
            raise ReportError(f"{path}: no 'step' column (columns: {', '.join(reader.fieldnames or [])})")
        for line, row in enumerate(reader, 2):
            try:
                step = float(row["step"])
            except (TypeError, ValueError):
                raise ReportError(f"{path}:{line}: step {row['step']!r} is not a number") from None
            for key, value in row.items():
                if key == "step" or value in (None, ""):
                    continue
                try:
                    v = float(value)
                except ValueError:
                    continue   # a text column (none today)
                if math.isfinite(v):
                    series.setdefault(key, []).append((step, v))
    return series


def plot_curves(series: dict[str, list[tuple[float, float]]], folder: Path) -> list[tuple[str, str]]:
    """One PNG per curve that has data; (file, title) of each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    made = []
    for name, title, columns in CURVES:
        present = [c for c in columns if series.get(c)]
        if not present:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for c in present:
            xs, ys = zip(*series[c])
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=c)
        if name == "lr.png" and all(v > 0 for c in present for _s, v in series[c]):
            ax.set_yscale("log")
        ax.set(title=title, xlabel="optimizer step")
        if len(present) > 1:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / name, dpi=90, format="png")
        plt.close(fig)
        made.append((name, title))
    return made


def find_eval(run: Path) -> Path | None:
    for p in (run / "best" / "eval-val.json", run / "eval-val.json"):
        if p.is_file():
            return p
    found = sorted(run.glob("**/eval-*.json"))
    return found[0] if found else None


def confused_pairs(evaluation: dict, pairs: int) -> list[dict]:
    return [c for c in evaluation.get("confusions", []) if c.get("true") != c.get("predicted")][:pairs]


def val_thumbnails(split: Path, classes: set[int], per_class: int, folder: Path) -> dict[int, list[str]]:
    """class id -> thumbnail file names (the first ``per_class`` samples of each class in the
    split's manifest order)."""
    import pyarrow.parquet as pq

    from pipeline import schema
    from pipeline.thumbnails import make_thumbnails
    manifest = split / schema.MANIFEST_FILE
    if not manifest.is_file():
        return {}
    table = pq.read_table(manifest, columns=["index", "class_id"]).to_pydict()
    chosen: dict[int, list[int]] = {}
    for index, c in zip(table["index"], table["class_id"]):
        if c in classes and len(chosen.setdefault(c, [])) < per_class:
            chosen[c].append(index)
    items = [{"index": i, "path": ""} for lst in chosen.values() for i in lst]
    made = make_thumbnails({"items": items, "shards": str(split), "out": str(folder), "size": 112})
    return {c: [made[i] for i in lst if made.get(i, "").endswith(".jpg")] for c, lst in chosen.items()}


def write_report(run: str | Path, eval_json: str | Path | None = None, out: str | Path | None = None,
                 pairs: int = 8, per_class: int = 4) -> Path:
    """Write the report of ``run``; the path of its page."""
    from webtag.atomic import atomic_dir
    run = Path(run)
    series = read_metrics(run / "metrics.csv")
    eval_path = Path(eval_json) if eval_json else find_eval(run)
    evaluation: dict = {}
    if eval_path is not None:
        try:
            evaluation = json.loads(eval_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReportError(f"{eval_path}: not an evaluation JSON ({exc})") from None
    out = Path(out) if out else run / "report"
    if out.exists():
        if not (out / "index.html").is_file():
            raise ReportError(f"{out} exists and is not a run report: choose another --out")
        import shutil
        shutil.rmtree(out)
    with atomic_dir(out) as tmp:
        curves = plot_curves(series, tmp)
        confusions = confused_pairs(evaluation, pairs)
        thumbs: dict[int, list[str]] = {}
        if confusions and evaluation.get("shards"):
            wanted = {int(c["true"]) for c in confusions} | {int(c["predicted"]) for c in confusions}
            thumbs = val_thumbnails(Path(evaluation["shards"]), wanted, per_class, tmp / "thumbs")
        (tmp / "index.html").write_text(_page(run, series, curves, evaluation, eval_path, confusions, thumbs),
                                        encoding="utf-8")
    return out / "index.html"


def _page(run, series, curves, evaluation, eval_path, confusions, thumbs) -> str:
    e = lambda s: html.escape(str(s), quote=True)   # noqa: E731
    last = {k: v[-1][1] for k, v in series.items() if v}
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>webtag run report: {e(run.name)}</title><style>body{{font:14px/1.4 system-ui,sans-serif;"
           "margin:0 1.5em}} img.c{{max-width:48%}} td,th{{padding:2px 8px;text-align:left}} .t img{{margin:2px}}"
           "</style></head><body>", f"<h1>Run {e(run.name)}</h1>", "<h2>Last logged values</h2><table>"]
    out += [f"<tr><th>{e(k)}</th><td>{v:.6g}</td></tr>" for k, v in sorted(last.items())]
    out.append("</table><h2>Curves</h2>")
    out += [f"<img class='c' src='{e(f)}' alt='{e(t)}'>" for f, t in curves] or ["<p>No curve logged.</p>"]
    if evaluation:
        keys = [k for k in ("images", "top1", "top5", "top1_balanced", "top5_balanced") if k in evaluation]
        out.append(f"<h2>Evaluation</h2><p>{e(eval_path)}: "
                   + ", ".join(f"{k} {evaluation[k]:.4g}" for k in keys) + "</p>")
        out.append("<h2>Most confused classes</h2>")
        if not confusions:
            out.append("<p>No confusion.</p>")
        for c in confusions:
            t, p = int(c["true"]), int(c["predicted"])
            row = lambda cid: "".join(f"<img src='thumbs/{e(n)}' alt='class {cid}'>" for n in thumbs.get(cid, []))  # noqa: E731
            out.append(f"<div class='t'><h3>{e(c.get('true_name', t))} &rarr; {e(c.get('predicted_name', p))}: "
                       f"{int(c['count'])} images</h3><div>true class: {row(t)}</div>"
                       f"<div>predicted class: {row(p)}</div></div>")
    else:
        out.append("<p>No evaluation JSON found (run <code>python -m finetune evaluate</code>).</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="a pretrain or finetune run folder (holds metrics.csv)")
    p.add_argument("--eval", help="evaluation JSON for the confusions (default: RUN/best/eval-val.json)")
    p.add_argument("--out", help="report folder (default: RUN/report)")
    p.add_argument("--pairs", type=int, default=8, help="most confused class pairs shown")


def main(args: argparse.Namespace) -> int:
    try:
        page = write_report(args.run, args.eval, args.out, pairs=args.pairs)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(page)
    return 0
