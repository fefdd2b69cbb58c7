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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from webtag.atomic import atomic_dir

from . import schema
from .config import TextMiningConfig
from .embed import IdLists, read_word_vectors, word_matrix
from .knn import load_centroids
from .layout import Layout, OutputMismatch
from .spill import budget_rows
from .weights import LabelWeighter, csr_from_lists
from .webdata import open_input

log = logging.getLogger(__name__)


def load_weighter(vocab_dir: Path, cfg: TextMiningConfig) -> tuple[VocabularyIds, LabelWeighter]:
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
    return VocabularyIds(vocab["keyword"], vocab["id"]), weighter


# memory of one image in a batch (its extract row as Python lists, keyword ids, the sparse score
# matrices of up to ~18 keywords x 20 classes and their flattened, sorted copies, the label
# lists): the step's peak rose by 32-36 KB an image of the batch on the 400k realistic release
# (65,536 and 32,768 images a batch), so 40 KB
TAG_ROW_BYTES = 40_960


class VocabularyIds:
    """Keyword -> vocabulary id for Arrow arrays of keywords (pc.index_in over the vocabulary's
    keywords; a Python dict lookup per keyword was 6% of the tag step's CPU at 1.6M records)."""

    def __init__(self, keywords: list[str], ids: list[int]):
        self.words = pa.array(keywords, pa.string())
        self.ids = np.asarray(ids, dtype=np.int64)

    def lists(self, keywords: pa.ListArray) -> IdLists:
        """Each row's keywords that are in the vocabulary, as their ids, in the row's order."""
        flat = keywords.flatten()
        rows = pc.list_parent_indices(keywords).to_numpy()
        pos = pc.fill_null(pc.index_in(flat, value_set=self.words), -1).to_numpy()
        found = pos >= 0
        ids = self.ids[pos[found]]
        counts = np.bincount(rows[found], minlength=len(keywords))
        return IdLists(np.concatenate([[0], np.cumsum(counts)]), ids)


def tag_batch(batch: pa.RecordBatch, dropped: np.ndarray, vocabulary: VocabularyIds, weighter: LabelWeighter,
              release, tags: dict):
    """One batch of a part's extract rows, less the ``dropped`` indices (sorted) -> (its images
    table, keyword ids per image, the rank of the image's own class in its labels (-1: absent),
    its top label weight). The columns stay in Arrow and numpy; the label lists go to Arrow as
    one flat array and offsets (weights_flat), not as a Python list of arrays per image."""
    index_all = batch.column("index").to_numpy()
    batch = batch.filter(pa.array(~np.isin(index_all, dropped)))
    kw = vocabulary.lists(batch.column("keywords"))
    class_ids = batch.column("class_id").to_numpy().astype(np.int32)
    index = batch.column("index").to_numpy().astype(np.int64)
    offsets, label_ids, label_w = weighter.weights_flat(kw, class_ids, index)
    offsets32 = pa.array(offsets.astype(np.int32), pa.int32())
    qids = batch.column("query_id").to_numpy().astype(np.int32)
    table = pa.table({
        "index": index,
        "key": batch.column("key"),
        "path": batch.column("path"),
        "source": batch.column("source"),
        "query_id": qids,
        "query": _query_texts(release, batch.column("source"), qids),
        "class_id": class_ids,
        "keyword_ids": pa.ListArray.from_arrays(pa.array(kw.offsets.astype(np.int32), pa.int32()),
                                                pa.array(kw.ids.astype(np.int32), pa.int32())),
        "label_ids": pa.ListArray.from_arrays(offsets32, pa.array(label_ids, pa.int32())),
        "label_weights": pa.ListArray.from_arrays(offsets32, pa.array(label_w, pa.float32())),
    }, schema=schema.with_metadata(schema.IMAGES, **tags))
    n_kw = kw.lengths
    rows = np.repeat(np.arange(len(class_ids)), np.diff(offsets))
    hit = np.flatnonzero(label_ids == class_ids[rows])      # a class appears once in an image's labels
    own_rank = np.full(len(class_ids), -1, dtype=np.int64)
    own_rank[rows[hit]] = hit - offsets[rows[hit]]
    top1 = label_w[offsets[:-1]].astype(np.float64)
    return table, n_kw, own_rank, top1


def _query_texts(release, sources: pa.Array, qids: np.ndarray) -> pa.Array:
    """release.query_text(source, query id) of each row, looked up once per distinct pair."""
    if not len(qids):
        return pa.array([], pa.string())
    enc = sources.dictionary_encode()
    names = enc.dictionary.to_pylist()
    pairs, inv = np.unique(np.stack([enc.indices.to_numpy().astype(np.int64), qids.astype(np.int64)], axis=1),
                           axis=0, return_inverse=True)
    texts = pa.array([release.query_text(names[a], int(b)) for a, b in pairs.tolist()], pa.string())
    return texts.take(pa.array(inv.reshape(-1), pa.int64()))


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
    vocabulary, weighter = load_weighter(vocab_dir, cfg)
    dropped = np.unique(pq.read_table(vocab_dir / "duplicates.parquet")["index"].to_numpy())

    tags = {"tagger": vocab_report["tagger"], "release": release.version}
    extract = pq.ParquetFile(layout.part_dir("count", part, num_parts) / "extract.parquet")
    batch_rows = budget_rows(cfg.reduce.memory_mb, TAG_ROW_BYTES)
    stats = {"images": 0, "with_keywords": 0, "keyword_ids": 0, "own_class_top1": 0, "own_class_top5": 0}
    top1 = []   # per image, for the report's sum in image order (8 bytes an image)
    with atomic_dir(dest) as tmp:
        with pq.ParquetWriter(tmp / "images.parquet", schema.with_metadata(schema.IMAGES, **tags)) as writer:
            wrote = False
            for batch in extract.iter_batches(batch_size=batch_rows):
                table, n_kw, own_rank, w1 = tag_batch(batch, dropped, vocabulary, weighter, release, tags)
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
