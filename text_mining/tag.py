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
from .embed import read_word_vectors, word_matrix
from .knn import load_centroids
from .layout import Layout, OutputMismatch
from .spill import budget_rows
from .weights import LabelWeighter, csr_from_lists
from .webdata import open_input

log = logging.getLogger(__name__)


def load_weighter(vocab_dir: Path, cfg: TextMiningConfig) -> tuple[dict, LabelWeighter]:
    vocab = pq.read_table(vocab_dir / schema.VOCABULARY_FILE).to_pydict()
    n_classes = pq.read_metadata(vocab_dir / schema.CLASSES_FILE).num_rows
    table = pq.read_table(vocab_dir / schema.KEYWORD_CLASSES_FILE).to_pydict()
    nb = pq.read_table(vocab_dir / "class_neighbours.parquet").to_pydict()
    matrix, words = read_word_vectors(vocab_dir)   # no pickle: a legacy word2vec.kv is refused
    ref = np.load(vocab_dir / "knn_reference.npz", allow_pickle=False)
    w = cfg.weights
    centroids = None
    if w.knn and w.knn_search == "ivf" and len(ref["index"]):
        centroids = load_centroids(vocab_dir, ref["embeddings"].shape[1])
    weighter = LabelWeighter(
        cfg.weights,
        keyword_table=csr_from_lists(table["class_ids"], table["scores"], n_classes),
        neighbours=csr_from_lists(nb["class_ids"], nb["scores"], n_classes),
        keyword_vectors=word_matrix(matrix, {w: i for i, w in enumerate(words)}, vocab["keyword"]),
        ref_embeddings=ref["embeddings"], ref_index=ref["index"], ref_class=ref["class_id"],
        centroids=centroids,
    )
    return dict(zip(vocab["keyword"], vocab["id"])), weighter


# memory of one image in a batch (its extract row as Python lists, keyword ids, the sparse score
# matrices of up to ~18 keywords x 20 classes and their flattened, sorted copies, the label
# lists): the step's peak rose by 32-36 KB an image of the batch on the 400k realistic release
# (65,536 and 32,768 images a batch), so 40 KB
TAG_ROW_BYTES = 40_960


def tag_batch(ext: dict, dropped: set, keyword_id: dict, weighter: LabelWeighter, release, tags: dict):
    """One batch of a part's extract rows (a column dict) -> (its images table, keyword ids per
    image, the rank of the image's own class in its labels (-1: absent), its top label weight).
    The label lists go to Arrow as one flat array and offsets (weights_flat), not as a Python
    list of arrays per image."""
    keep = [i for i, idx in enumerate(ext["index"]) if idx not in dropped]
    kw_ids = [[keyword_id[k] for k in ext["keywords"][i] if k in keyword_id] for i in keep]
    class_ids = np.asarray([ext["class_id"][i] for i in keep], dtype=np.int32)
    index = np.asarray([ext["index"][i] for i in keep], dtype=np.int64)
    offsets, label_ids, label_w = weighter.weights_flat(kw_ids, class_ids, index)
    offsets32 = pa.array(offsets.astype(np.int32), pa.int32())
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
        "label_ids": pa.ListArray.from_arrays(offsets32, pa.array(label_ids, pa.int32())),
        "label_weights": pa.ListArray.from_arrays(offsets32, pa.array(label_w, pa.float32())),
    }, schema=schema.with_metadata(schema.IMAGES, **tags))
    n_kw = np.fromiter((len(x) for x in kw_ids), dtype=np.int64, count=len(kw_ids))
    rows = np.repeat(np.arange(len(class_ids)), np.diff(offsets))
    hit = np.flatnonzero(label_ids == class_ids[rows])      # a class appears once in an image's labels
    own_rank = np.full(len(class_ids), -1, dtype=np.int64)
    own_rank[rows[hit]] = hit - offsets[rows[hit]]
    top1 = label_w[offsets[:-1]].astype(np.float64)
    return table, n_kw, own_rank, top1


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

    tags = {"tagger": vocab_report["tagger"], "release": release.version}
    extract = pq.ParquetFile(layout.part_dir("count", part, num_parts) / "extract.parquet")
    batch_rows = budget_rows(cfg.reduce.memory_mb, TAG_ROW_BYTES)
    stats = {"images": 0, "with_keywords": 0, "keyword_ids": 0, "own_class_top1": 0, "own_class_top5": 0}
    top1 = []   # per image, for the report's sum in image order (8 bytes an image)
    with atomic_dir(dest) as tmp:
        with pq.ParquetWriter(tmp / "images.parquet", schema.with_metadata(schema.IMAGES, **tags)) as writer:
            wrote = False
            for batch in extract.iter_batches(batch_size=batch_rows):
                table, n_kw, own_rank, w1 = tag_batch(batch.to_pydict(), dropped, keyword_id, weighter,
                                                      release, tags)
                if table.num_rows or not wrote:
                    writer.write_table(table)
                    wrote = True
                stats["images"] += table.num_rows
                stats["with_keywords"] += int((n_kw > 0).sum())
                stats["keyword_ids"] += int(n_kw.sum())
                stats["own_class_top1"] += int((own_rank == 0).sum())
                stats["own_class_top5"] += int(((own_rank >= 0) & (own_rank < 5)).sum())
                top1.append(w1)
            if not wrote:
                writer.write_table(writer.schema.empty_table())
        w1 = np.concatenate(top1) if top1 else np.zeros(0)
        report = {"part": part, "num_parts": num_parts, **stats,
                  "top1_weight_sum": float(sum(float(x) for x in w1)),
                  "seconds": round(time.perf_counter() - t0, 3)}
        (tmp / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    log.info("tag part %d/%d: %d images, %.2f keywords/image, %.1fs", part, num_parts, stats["images"],
             stats["keyword_ids"] / stats["images"] if stats["images"] else 0.0, report["seconds"])
    return report
