"""Pseudo-labels: the best models relabel the training images, for another finetuning round.

For every training image in the shards, the ensemble's averaged probabilities p (eval transform);
where ``max p >= threshold`` the image's ``class_id`` becomes ``argmax p`` (a confident prediction
replaces the web label), otherwise the web label stays. The output folder is a text-mining output
folder (same schema, text_mining/schema.py): images.parquet with the new class ids (keywords and
LW-Set label weights, which come from the text, are kept), the other tables copied, and
pseudo_labels.json with what changed, and its own ``complete.json`` (fingerprint) written last.
The shards must have been built from ``labels_dir`` (their recorded fingerprint; refused
otherwise). Shard it again (python -m pipeline shard --labels OUT) and finetune on the new shards.
"""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import check_labels
from text_mining import schema as tm
from webtag.atomic import atomic_dir

from .infer import ensemble_batches, write_json

REPORT = "pseudo_labels.json"


def pseudo_label(models, train_split: str | Path, labels_dir: str | Path, threshold: float, out: str | Path,
                 checkpoints: list[str] | None = None, **kw) -> dict:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"--threshold {threshold}: must be in (0, 1]")
    labels_dir = Path(labels_dir)
    source = check_labels(train_split, labels_dir)   # finished labels, the ones the shards were made from
    images = tm.read_table(labels_dir / tm.IMAGES_FILE, tm.IMAGES)
    index = images.column("index").to_numpy()
    row_of = {int(i): r for r, i in enumerate(index)}
    new_class = images.column("class_id").to_numpy().copy()
    seen = confident = changed = 0
    moves: Counter = Counter()
    unknown = []
    for probs, fields in ensemble_batches(models, train_split, **kw):
        conf, pred = probs.max(dim=1)
        for idx, c, p, web in zip(fields["index"].tolist(), conf.tolist(), pred.tolist(),
                                  fields["class_id"].tolist()):
            row = row_of.get(idx)
            if row is None:
                unknown.append(idx)
                continue
            seen += 1
            if c >= threshold:
                confident += 1
                if p != new_class[row]:
                    changed += 1
                    moves[(int(new_class[row]), int(p))] += 1
                    new_class[row] = p
    if unknown:
        raise ValueError(f"{len(unknown)} shard samples (e.g. index {unknown[0]}) are not in "
                         f"{labels_dir / tm.IMAGES_FILE}: the shards were made from other labels")
    table = images.set_column(images.schema.get_field_index("class_id"), images.schema.field("class_id"),
                              pa.array(new_class.astype(np.int32), pa.int32()))
    meta = dict(images.schema.metadata or {})
    meta[b"webtag.pseudo_labels"] = f"threshold={threshold}; models={checkpoints or []}".encode()
    table = table.replace_schema_metadata(meta)
    report = {"images": int(len(index)), "relabelled_from_shards": seen, "confident": confident,
              "changed": changed, "changed_share": changed / max(1, seen), "threshold": threshold,
              "checkpoints": checkpoints or [], "source_labels": str(labels_dir.resolve()),
              "top_changes": [{"from": a, "to": b, "count": n} for (a, b), n in moves.most_common(20)]}
    out = Path(out)
    with atomic_dir(out) as tmp:
        pq.write_table(table, tmp / tm.IMAGES_FILE)
        for name in (tm.VOCABULARY_FILE, tm.CLASSES_FILE, tm.KEYWORD_CLASSES_FILE, tm.REPORT_JSON, tm.REPORT_MD,
                     tm.CONFIG_FILE):
            if (labels_dir / name).exists():
                shutil.copy2(labels_dir / name, tmp / name)
        write_json(tmp / REPORT, report)
        tm.write_complete(tmp, "finetune pseudo-label", source_fingerprint=source["fingerprint"])
    return report
