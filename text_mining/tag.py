"""Map step 2, ``tag``: keyword ids (WT-Set) and label weights (LW-Set) for one part.

Reads the part's ``count`` output and the ``vocabulary`` step's tables; writes
``_work/tag/part-I-of-N/images.parquet`` (schema.IMAGES) and ``report.json``. Uses the same
part count as ``count``.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from webtag.atomic import atomic_dir

from . import schema
from .config import TextMiningConfig
from .embed import load_word_vectors, word_matrix
from .layout import Layout, OutputMismatch
from .weights import LabelWeighter, csr_from_lists
from .webdata import open_input

log = logging.getLogger(__name__)


def load_weighter(vocab_dir: Path, cfg: TextMiningConfig) -> tuple[dict, LabelWeighter]:
    vocab = pq.read_table(vocab_dir / schema.VOCABULARY_FILE).to_pydict()
    n_classes = pq.read_metadata(vocab_dir / schema.CLASSES_FILE).num_rows
    table = pq.read_table(vocab_dir / schema.KEYWORD_CLASSES_FILE).to_pydict()
    nb = pq.read_table(vocab_dir / "class_neighbours.parquet").to_pydict()
    kv = load_word_vectors(vocab_dir)   # no pickle: a legacy word2vec.kv is refused
    ref = np.load(vocab_dir / "knn_reference.npz", allow_pickle=False)
    weighter = LabelWeighter(
        cfg.weights,
        keyword_table=csr_from_lists(table["class_ids"], table["scores"], n_classes),
        neighbours=csr_from_lists(nb["class_ids"], nb["scores"], n_classes),
        keyword_vectors=word_matrix(kv, vocab["keyword"]),
        ref_embeddings=ref["embeddings"], ref_index=ref["index"], ref_class=ref["class_id"],
    )
    return dict(zip(vocab["keyword"], vocab["id"])), weighter


def tag_part(root: str | Path, out: str | Path, cfg: TextMiningConfig, part: int, num_parts: int) -> dict:
    layout = Layout(out)
    done = layout.finished_part("tag", part, num_parts)
    if done is not None:
        return done
    dest = layout.part_dir("tag", part, num_parts)
    layout.check_config(cfg)
    n_count, _ = layout.require_all("count", "tagging")
    if n_count != num_parts:
        raise OutputMismatch(f"tag must use the part count of count ({n_count}), not {num_parts}")
    vocab_dir = layout.vocabulary_dir
    if not (vocab_dir / "report.json").exists():
        raise OutputMismatch(f"{vocab_dir} is not finished: run `python -m text_mining vocabulary` first")
    layout.prepare("tag")
    t0 = time.perf_counter()
    release = open_input(root, cfg.reader, cfg.wordnet.nltk_data)
    vocab_report = json.loads((vocab_dir / "report.json").read_text())
    keyword_id, weighter = load_weighter(vocab_dir, cfg)
    dropped = set(pq.read_table(vocab_dir / "duplicates.parquet")["index"].to_pylist())

    ext = pq.read_table(layout.part_dir("count", part, num_parts) / "extract.parquet").to_pydict()
    keep = [i for i, idx in enumerate(ext["index"]) if idx not in dropped]
    kw_ids = [[keyword_id[k] for k in ext["keywords"][i] if k in keyword_id] for i in keep]
    class_ids = np.asarray([ext["class_id"][i] for i in keep], dtype=np.int32)
    index = np.asarray([ext["index"][i] for i in keep], dtype=np.int64)
    label_ids, label_w = weighter.weights(kw_ids, class_ids, index)
    sources = [ext["source"][i] for i in keep]
    qids = [ext["query_id"][i] for i in keep]
    table = pa.table({
        "index": index,
        "key": [ext["key"][i] for i in keep],
        "path": [ext["path"][i] for i in keep],
        "source": sources,
        "query_id": np.asarray(qids, dtype=np.int32),
        "query": [release.query_text(s, q) for s, q in zip(sources, qids)],
        "class_id": class_ids,
        "keyword_ids": kw_ids,
        "label_ids": label_ids,
        "label_weights": label_w,
    }, schema=schema.with_metadata(schema.IMAGES, tagger=vocab_report["tagger"], release=release.version))
    n_kw = np.fromiter((len(x) for x in kw_ids), dtype=np.int64, count=len(kw_ids))
    own_rank = [list(ids).index(c) if c in ids else -1 for ids, c in zip(label_ids, class_ids)]
    report = {
        "part": part, "num_parts": num_parts, "images": table.num_rows,
        "with_keywords": int((n_kw > 0).sum()), "keyword_ids": int(n_kw.sum()),
        "own_class_top1": int(sum(r == 0 for r in own_rank)),
        "own_class_top5": int(sum(0 <= r < 5 for r in own_rank)),
        "top1_weight_sum": float(sum(float(w[0]) for w in label_w)),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    with atomic_dir(dest) as tmp:
        pq.write_table(table, tmp / "images.parquet")
        (tmp / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    log.info("tag part %d/%d: %d images, %.2f keywords/image, %.1fs", part, num_parts, table.num_rows,
             n_kw.mean() if len(n_kw) else 0.0, report["seconds"])
    return report
