"""The per-class table beside an evaluation: one CSV row per class with images in the evaluated
split (class id, WordNet id, name, image count, top-1, top-5), names from the text-mining class
list the model was trained on."""
from __future__ import annotations

import csv
from pathlib import Path

from webtag.atomic import atomic_file

COLUMNS = ("class_id", "wnid", "name", "count", "top1", "top5")


def class_table(labels_dir: str | Path | None, num_classes: int) -> tuple[list[str], list[str]] | None:
    """(wnids, names) indexed by class id from a text-mining folder's class list, or None when the
    folder or its list is not there or does not have ``num_classes`` classes."""
    if not labels_dir:
        return None
    from text_mining import schema as tm
    path = Path(labels_dir) / tm.CLASSES_FILE
    if not path.is_file():
        return None
    import pyarrow.parquet as pq
    t = pq.read_table(path, columns=["class_id", "wnid", "name"]).to_pydict()
    if not t["class_id"] or max(t["class_id"]) + 1 != num_classes:
        return None
    wnids, names = [""] * num_classes, [""] * num_classes
    for i, w, n in zip(t["class_id"], t["wnid"], t["name"]):
        wnids[i], names[i] = w, n
    return wnids, names


def per_class_path(result_json: str | Path) -> Path:
    """Where the table of a result JSON goes: ``eval-val.json`` -> ``eval-val-per-class.csv``."""
    p = Path(result_json)
    return p.with_name(p.stem + "-per-class.csv")


def write_per_class(path: str | Path, rows: list[dict], table: tuple[list[str], list[str]] | None) -> None:
    """``rows``: :meth:`finetune.metrics.ClassificationMeter.per_class`; written atomically."""
    wnids, names = table if table else (None, None)
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            c = r["class_id"]
            w.writerow([c, wnids[c] if wnids else "", names[c] if names else "", r["count"],
                        f"{r['top1']:.6f}", f"{r['top5']:.6f}"])
