"""Reduce step, ``vocabulary``: merge the parts' counts into the keyword vocabulary and build
everything the per-image label weights need.

Writes ``_work/vocabulary/`` with
- ``vocabulary.parquet`` and ``classes.parquet`` (schemas in schema.py);
- ``duplicates.parquet``: train-list indices of images listed again (dropped by ``tag``);
- ``word2vec.npy`` + ``word2vec_words.json``: word vectors (gensim word2vec) trained on the images'
  vocabulary keywords plus the words of their query (so that class words and keywords share one
  space; at most ``word2vec.max_sentences`` images' sentences, corpus.py), stored without pickle
  (embed.save_word_vectors);
- ``keyword_classes.parquet``: per keyword, the top-k classes by
  ``wordnet_mix * WordNet(keyword, class) + (1 - wordnet_mix) * max(0, cos(v_keyword, v_class))``;
- ``class_neighbours.parquet``: per class, its top-k WordNet neighbours (the query's neighbourhood);
- ``knn_reference.npz``: text embeddings and classes of a sample of images (the KNN-label set);
- ``knn_centroids.npy``: with weights.knn_search ivf, the search's coarse centroids (knn.py);
- ``report.json``.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from webtag.atomic import atomic_dir

from . import knn, schema
from .config import TextMiningConfig, VocabularyConfig
from .corpus import check_words, write_corpus
from .embed import mean_embeddings, normalise_rows, save_word_vectors, train_word2vec, word_matrix
from .keywords import tokenize
from .layout import Layout
from .morphy import morphy_of
from .problems import Problems
from .similarity import ClassSimilarity, Taxonomy, top_k_rows
from .spill import HashPartitions, budget_rows, partitions_for
from .webdata import open_input
from .webvision import Release
from .wordnet import load_wordnet, synset_from_wnid

log = logging.getLogger(__name__)

NEIGHBOURS_SCHEMA = pa.schema([("class_id", pa.int32()), ("class_ids", pa.list_(pa.int32())),
                               ("scores", pa.list_(pa.float32()))])


def filter_vocabulary(counts: pd.DataFrame, n_images: int, cfg: VocabularyConfig) -> tuple[pd.DataFrame, dict]:
    """Keyword counts (keyword, count, df) -> the vocabulary table and what was dropped.

    Order: document frequency descending, then keyword. Drops the ``drop_top`` most frequent
    keywords, those in more than ``max_df`` of the images and those in fewer than ``min_df``
    images, then keeps the ``max_size`` most frequent."""
    ranked = counts.sort_values(["df", "keyword"], ascending=[False, True], kind="mergesort")
    ranked = ranked.reset_index(drop=True)
    n_top = min(cfg.drop_top, len(ranked))
    too_common = ranked.iloc[:n_top]
    rest = ranked.iloc[n_top:]
    over_df = rest[rest["df"] > cfg.max_df * n_images]
    rest = rest[rest["df"] <= cfg.max_df * n_images]
    rare = rest[rest["df"] < cfg.min_df]
    rest = rest[rest["df"] >= cfg.min_df]
    capped = rest.iloc[cfg.max_size:]
    vocab = rest.iloc[: cfg.max_size].copy()
    vocab.insert(1, "id", np.arange(len(vocab), dtype=np.int32))
    vocab = vocab[["keyword", "id", "count", "df"]].reset_index(drop=True)
    dropped = {
        "distinct_keywords": int(len(ranked)),
        "dropped_most_common": too_common["keyword"].tolist(),
        "dropped_over_max_df": over_df["keyword"].tolist()[:100],
        "dropped_over_max_df_count": int(len(over_df)),
        "dropped_rare_count": int(len(rare)),
        "dropped_over_max_size_count": int(len(capped)),
        "vocabulary_size": int(len(vocab)),
    }
    return vocab, dropped


def _extract_batches(parts: list[Path], columns: list[str]):
    for p in parts:
        pf = pq.ParquetFile(p / "extract.parquet")
        for batch in pf.iter_batches(batch_size=65536, columns=columns):
            yield batch


def _term(wn, token: str) -> str:
    forms = morphy_of(wn).forms(token, "n")
    return min(forms, key=len) if forms else token


def query_terms(release: Release, wn) -> dict[tuple[str, int], list[str]]:
    """(source, query id) -> lower-case noun lemmas of the query's words."""
    out = {}
    for source, queries in release.queries.items():
        for qid, text in queries.items():
            out[(source, qid)] = [_term(wn, t.lower()) for t in tokenize(text)]
    return out


def _candidates(parts: list[Path], words: list[str], dropped: np.ndarray):
    """Per batch of the count parts, in corpus order: (index, class_id, vocabulary ids of each
    row as offsets + flat ids) of its kept images with vocabulary keywords.

    Vectorised with Arrow (a Python loop per image and keyword was 40 s of the 1.6M-record
    vocabulary step, its two passes; this is the same rows, ids in keyword order)."""
    words_arr = pa.array(words, pa.string())       # a keyword's position here is its id
    dropped_arr = pa.array(dropped, pa.int64())
    for batch in _extract_batches(parts, ["index", "class_id", "keywords"]):
        n = batch.num_rows
        lists = batch.column(2)
        ids = pc.index_in(pc.list_flatten(lists), value_set=words_arr)
        valid = ids.is_valid().to_numpy(zero_copy_only=False)
        parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)[valid]
        flat = ids.filter(ids.is_valid()).to_numpy(zero_copy_only=False).astype(np.int64)
        index = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
        keep = (np.bincount(parent, minlength=n) > 0) & ~np.isin(index, dropped_arr.to_numpy())
        flat, parent = flat[keep[parent]], parent[keep[parent]]
        counts = np.bincount(parent, minlength=n)[keep]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        yield index[keep], batch.column(1).to_numpy(zero_copy_only=False)[keep], offsets, flat


def knn_reference(parts: list[Path], words: list[str], dropped: np.ndarray, size: int, seed: int,
                  kw_vecs: np.ndarray):
    """The KNN reference set: ``size`` of the images with vocabulary keywords, drawn uniformly
    (seeded), as (unit mean embeddings, indices, class ids) in corpus order.

    Two passes over the count parts, so that memory is bounded by ``size`` (weights.knn_reference),
    not by the corpus: the first counts the candidates, the second keeps only the drawn ones (the
    draw is the one a single pass over all candidates made, so the set is the same; that pass held
    a Python list of keyword ids for every candidate image, which grew with the corpus)."""
    n_cand = sum(len(index) for index, _, _, _ in _candidates(parts, words, dropped))
    n_ref = min(size, n_cand)
    if not n_ref:
        return mean_embeddings([], kw_vecs), np.zeros(0, np.int64), np.zeros(0, np.int32)
    pick = np.sort(np.random.default_rng(seed).choice(n_cand, size=n_ref, replace=False))
    ids, index, classes = [], [], []
    base = 0
    for idx, cls, offsets, flat in _candidates(parts, words, dropped):
        rows = pick[(pick >= base) & (pick < base + len(idx))] - base
        base += len(idx)
        index.append(idx[rows])
        classes.append(cls[rows])
        ids += [flat[offsets[r]: offsets[r + 1]] for r in rows]
    return (mean_embeddings(ids, kw_vecs), np.concatenate(index).astype(np.int64),
            np.concatenate(classes).astype(np.int32))


DUP_SCHEMA = pa.schema([("pos", pa.int64()), ("index", pa.int64()), ("key", pa.string())])
# memory of one record in the duplicate search (pandas: index, key object, hash table, the
# duplicates' frame): 218 bytes measured at 21-character keys, with room for longer ones
DUP_ROW_BYTES = 320


def _partition_duplicates(table: pa.Table) -> pd.DataFrame:
    """(pos, index, key, first index) of every record whose key was met before, in one partition."""
    df = table.to_pandas()
    dup_mask = df.duplicated("key", keep="first")
    if not dup_mask.any():
        return pd.DataFrame({"pos": [], "index": [], "key": [], "first": []})
    first = df[~dup_mask].set_index("key")["index"]
    dups = df.loc[dup_mask, ["pos", "index", "key"]]
    return dups.assign(first=first.reindex(dups["key"]).to_numpy())


def find_duplicates(release: Release, parts: list[Path], problems: Problems, memory_mb: int = 1 << 20,
                    spill_dir: Path | None = None) -> np.ndarray:
    """Train-list indices of the records whose key was listed before (sorted), each reported as
    a ``duplicate_image`` problem in corpus order. The search holds at most ``memory_mb`` of
    records (reduce.memory_mb): a larger corpus is split into hash partitions of the key spilled
    under ``spill_dir``, searched one at a time (a key's copies share a partition)."""
    rows = sum(pq.read_metadata(p / "extract.parquet").num_rows for p in parts)
    n_part = partitions_for(rows, memory_mb, DUP_ROW_BYTES)
    found = []
    with HashPartitions(n_part, "key", DUP_SCHEMA, spill_dir or Path(tempfile.gettempdir())) as hp:
        pos = 0
        for batch in _extract_batches(parts, ["index", "key"]):
            hp.add(pa.record_batch([pa.array(np.arange(pos, pos + len(batch), dtype=np.int64)),
                                    batch.column(0).cast(pa.int64()), batch.column(1).cast(pa.string())],
                                   schema=DUP_SCHEMA))
            pos += len(batch)
        for table in hp:
            found.append(_partition_duplicates(table))
    dups = pd.concat(found, ignore_index=True).sort_values("pos", kind="mergesort") if found else None
    if dups is None or not len(dups):
        return np.zeros(0, np.int64)
    for idx, key, first in dups[["index", "key", "first"]].itertuples(index=False):
        seg, line = release.locate(int(idx))
        problems.add("duplicate_image", str(seg.filelist), line,
                     f"{key} is listed again (first at train-list index {int(first)}); dropped")
    return np.sort(dups["index"].to_numpy(dtype=np.int64))


COUNT_ROW_BYTES = 160   # one keyword row of the parts' counts tables in Arrow, with the group-by's (estimate)


def merge_counts(parts: list[Path], memory_mb: int = 1 << 20) -> pd.DataFrame:
    """The parts' keyword counts summed: (keyword, count, df), sorted by keyword. The parts are
    added up a few at a time (as many rows as ``memory_mb`` holds beside the running total), so
    memory is the distinct keywords', not the sum of the parts' tables."""
    budget = budget_rows(memory_mb, COUNT_ROW_BYTES)
    total, pending, held = None, [], 0

    def reduce(tables):
        t = pa.concat_tables(tables).group_by("keyword").aggregate([("count", "sum"), ("df", "sum")])
        return pa.table({"keyword": t["keyword"], "count": t["count_sum"], "df": t["df_sum"]})

    for p in parts:
        t = pq.read_table(p / "counts.parquet").select(["keyword", "count", "df"])
        pending.append(t)
        held += len(t)
        if held + (len(total) if total is not None else 0) > budget and len(pending) > 1:
            total = reduce(([total] if total is not None else []) + pending)
            pending, held = [], 0
    if pending or total is None:
        total = reduce(([total] if total is not None else []) + pending) if pending else \
            pa.table({"keyword": pa.array([], pa.string()), "count": pa.array([], pa.int64()),
                      "df": pa.array([], pa.int64())})
    total = total.sort_by("keyword")   # UTF-8 byte order is code point order: Python's str order
    return total.to_pandas()


def build_vocabulary(root: str | Path, out: str | Path, cfg: TextMiningConfig) -> dict:
    layout = Layout(out)
    dest = layout.vocabulary_dir
    if dest.exists():
        log.info("vocabulary already done (%s)", dest)
        return json.loads((dest / "report.json").read_text())
    layout.check_config(cfg)
    num_parts, parts = layout.require_all("count", "the vocabulary step")
    layout.prepare()
    t0 = time.perf_counter()
    timings = {}
    release = open_input(root, cfg.reader, cfg.wordnet.nltk_data)
    wn = load_wordnet(cfg.wordnet.nltk_data)
    problems = Problems(cfg.reader.on_error)

    memory_mb = cfg.reduce.memory_mb
    dup_idx = find_duplicates(release, parts, problems, memory_mb, layout.work)
    dropped = set(dup_idx.tolist())
    n_images = sum(json.loads((p / "report.json").read_text())["images"] for p in parts) - len(dup_idx)

    counts = merge_counts(parts, memory_mb)
    if len(dup_idx):  # remove the dropped copies' contribution
        sub = {}
        for batch in _extract_batches(parts, ["index", "keywords", "keyword_counts"]):
            d = batch.to_pydict()
            for idx, kws, cnts in zip(d["index"], d["keywords"], d["keyword_counts"]):
                if idx in dropped:
                    for k, c in zip(kws, cnts):
                        a = sub.setdefault(k, [0, 0])
                        a[0] += c
                        a[1] += 1
        if sub:
            s = pd.DataFrame([(k, v[0], v[1]) for k, v in sub.items()], columns=["keyword", "c", "d"])
            counts = counts.merge(s, on="keyword", how="left").fillna({"c": 0, "d": 0})
            counts["count"] -= counts.pop("c").astype(np.int64)
            counts["df"] -= counts.pop("d").astype(np.int64)
            counts = counts[counts["df"] > 0]
    vocab, vocab_stats = filter_vocabulary(counts, n_images, cfg.vocabulary)
    words = vocab["keyword"].tolist()
    timings["vocabulary"] = time.perf_counter() - t0

    classes = pd.DataFrame({
        "class_id": np.arange(len(release.classes), dtype=np.int32),
        "wnid": [c.wnid for c in release.classes],
        "name": [c.name for c in release.classes],
        "words": [list(c.words) for c in release.classes],
    })

    # word vectors
    t = time.perf_counter()
    qterms = query_terms(release, wn)
    vocab_set = set(words)
    check_words(words, "the vocabulary")
    check_words((w for terms in qterms.values() for w in terms), "the queries")
    corpus_path = layout.work / "word2vec_corpus.txt"
    try:
        corpus_stats = write_corpus(
            _extract_batches(parts, ["index", "source", "query_id", "keywords"]), vocab_set, qterms,
            dropped, n_images, cfg.word2vec, corpus_path)
        kv = train_word2vec(corpus_path, cfg.word2vec)
    finally:
        corpus_path.unlink(missing_ok=True)
    timings["word2vec"] = time.perf_counter() - t

    # keyword x class and class x class tables
    t = time.perf_counter()
    class_syn = [synset_from_wnid(wn, c.wnid) for c in release.classes]
    tax = Taxonomy(wn)
    sim = ClassSimilarity(tax, class_syn, cfg.weights.measure)
    # a class's words: its synset words and the words of its queries
    class_terms = [[_term(wn, t.lower()) for w in c.words for t in tokenize(w)] for c in release.classes]
    for (_source, qid), qt in sorted(qterms.items()):
        if qid in release.query_class:
            class_terms[release.query_class[qid]] += qt
    class_term_lists = [list(dict.fromkeys(terms)) for terms in class_terms]
    class_vecs = np.zeros((len(class_syn), kv.vector_size), dtype=np.float32)
    for ci, terms in enumerate(class_term_lists):
        class_vecs[ci] = word_matrix(kv.vectors, kv.key_to_index, terms).sum(axis=0)
    class_vecs = normalise_rows(class_vecs)
    kw_vecs = word_matrix(kv.vectors, kv.key_to_index, words)
    mix = cfg.weights.wordnet_mix
    table_ids, table_scores = [], []
    chunk = 512
    for lo in range(0, len(words), chunk):
        block = words[lo: lo + chunk]
        wn_rows = np.stack([sim.word_row(tax.noun_senses(w)[: cfg.weights.max_senses]) for w in block]) \
            if block else np.zeros((0, len(class_syn)), np.float32)
        vec_rows = np.clip(kw_vecs[lo: lo + chunk] @ class_vecs.T, 0.0, 1.0)
        ids, scores = top_k_rows(mix * wn_rows + (1.0 - mix) * vec_rows, cfg.weights.table_top_k)
        table_ids += ids
        table_scores += scores
    nb_ids, nb_scores = top_k_rows(sim.rows(class_syn), cfg.weights.query_top_k)
    timings["similarity_tables"] = time.perf_counter() - t

    # KNN reference set
    t = time.perf_counter()
    ref_emb, ref_index, ref_class = knn_reference(parts, words, dup_idx, cfg.weights.knn_reference,
                                                  cfg.weights.seed, kw_vecs)
    centroids = None   # ivf search: its coarse centroids, trained once here (text_mining/knn.py)
    if cfg.weights.knn_search == "ivf" and len(ref_index):
        centroids = knn.train_centroids(ref_emb, cfg.weights.knn_lists or knn.auto_lists(len(ref_index)),
                                        cfg.weights.seed)
    timings["knn_reference"] = time.perf_counter() - t

    tagger = json.loads((parts[0] / "report.json").read_text())["tagger"]
    report = {
        "num_parts": num_parts, "images": int(n_images), "duplicates": int(len(dup_idx)),
        "tagger": tagger, **vocab_stats, "word2vec_words": len(kv), "word2vec_corpus": corpus_stats,
        "knn_reference": int(len(ref_index)), "problems": problems.to_dict(),
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    report["seconds"]["total"] = round(time.perf_counter() - t0, 3)
    meta = {"tagger": tagger, "release": release.version}
    with atomic_dir(dest) as tmp:
        pq.write_table(pa.Table.from_pandas(vocab, schema=schema.with_metadata(schema.VOCABULARY, **meta),
                                            preserve_index=False), tmp / schema.VOCABULARY_FILE)
        pq.write_table(pa.Table.from_pandas(classes, schema=schema.with_metadata(schema.CLASSES, **meta),
                                            preserve_index=False), tmp / schema.CLASSES_FILE)
        pq.write_table(pa.table({"keyword_id": np.arange(len(words), dtype=np.int32),
                                 "class_ids": table_ids, "scores": table_scores},
                                schema=schema.with_metadata(schema.KEYWORD_CLASSES, **meta,
                                                            measure=cfg.weights.measure)),
                       tmp / schema.KEYWORD_CLASSES_FILE)
        pq.write_table(pa.table({"class_id": np.arange(len(class_syn), dtype=np.int32),
                                 "class_ids": nb_ids, "scores": nb_scores}, schema=NEIGHBOURS_SCHEMA),
                       tmp / "class_neighbours.parquet")
        pq.write_table(pa.table({"index": dup_idx}), tmp / "duplicates.parquet")
        save_word_vectors(kv, tmp)
        np.savez(tmp / "knn_reference.npz", embeddings=ref_emb, index=ref_index, class_id=ref_class)
        if centroids is not None:
            knn.save_centroids(tmp, centroids)
        (tmp / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    log.info("vocabulary: %d keywords (of %d distinct), %d duplicates dropped, %.1fs",
             len(words), vocab_stats["distinct_keywords"], len(dup_idx), report["seconds"]["total"])
    return report
