"""The method options of the trainer that change the model: pooling (GeM for MultiGrain) and the
ML-GCN classifier head. Applied to the timm model in place, so that parameter names, the
backbone file (every tensor but the classifier) and checkpoints stay as for the plain model."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from torch import nn

from text_mining import schema as tm
from text_mining.embed import WordVectorsError, load_word_vectors

from .config import GCNConfig, ModelConfig
from .data import DataError
from .gcn import GCNClassifier, check_embedding_dim, label_embeddings, load_embedding_matrix, sparse_tensor
from .graph import graph_stats, label_graph
from .backbone import head_prefix, replace_module
from .multigrain import GeM

log = logging.getLogger(__name__)
WORD2VEC = Path("_work") / "vocabulary"   # where text mining keeps its word vectors (text_mining.embed's files)


def set_pooling(model: nn.Module, cfg: ModelConfig) -> None:
    if cfg.pooling == "default":
        return
    path = next((n for n, m in model.named_modules() if n.split(".")[-1] == "global_pool"), None)
    if path is None:
        raise ValueError(f"model.pooling={cfg.pooling}: {cfg.name} has no global_pool module to replace")
    old = model.get_submodule(path)
    flatten = bool(getattr(old, "flatten", None)) and not isinstance(getattr(old, "flatten"), nn.Identity)
    if cfg.pooling == "gem":
        new: nn.Module = GeM(cfg.gem_p, learnable=cfg.gem_learnable, flatten=flatten)
    else:
        from timm.layers import SelectAdaptivePool2d
        new = SelectAdaptivePool2d(pool_type=cfg.pooling, flatten=flatten)
    replace_module(model, path, new)


def label_lists(labels_dir: str | Path, target: str) -> list:
    t = pq.read_table(Path(labels_dir) / tm.IMAGES_FILE,
                      columns=["keyword_ids" if target == "keywords" else "label_ids", "class_id"])
    if target == "keywords":
        return t.column("keyword_ids").to_pylist()
    if target == "weights":
        return t.column("label_ids").to_pylist()
    log.warning("gcn head with data.target=class: one label per image, the graph has only self-loops")
    return [[c] for c in t.column("class_id").to_pylist()]


def label_names(labels_dir: str | Path, target: str) -> list[list[str]]:
    if target == "keywords":
        return [[k] for k in pq.read_table(Path(labels_dir) / tm.VOCABULARY_FILE, columns=["keyword"])
                .column("keyword").to_pylist()]
    return pq.read_table(Path(labels_dir) / tm.CLASSES_FILE, columns=["words"]).column("words").to_pylist()


def gcn_embeddings(labels_dir: str | Path, target: str, cfg: GCNConfig, num_labels: int) -> np.ndarray:
    if cfg.embeddings != "word2vec":
        return load_embedding_matrix(cfg.embeddings, num_labels, cfg.embedding_dim)
    try:   # no pickle: a labels folder with only gensim's word2vec.kv is refused
        vectors = load_word_vectors(Path(labels_dir) / WORD2VEC)
    except WordVectorsError as exc:
        raise DataError(f"model.gcn.embeddings=word2vec needs text mining's word vectors: {exc}; or give "
                        "model.gcn.embeddings=FILE.npy") from None
    emb, _ = label_embeddings(label_names(labels_dir, target), vectors)
    check_embedding_dim(emb, cfg.embedding_dim, f"{labels_dir}'s word2vec")
    return emb


def set_gcn_head(model: nn.Module, labels_dir: str | Path, target: str, cfg: GCNConfig, num_labels: int) -> dict:
    """Replace the model's last linear layer by an ML-GCN classifier over the labels' graph."""
    import torch
    a_hat = label_graph(label_lists(labels_dir, target), num_labels, cfg.tau, cfg.p, cfg.variant)
    stats = graph_stats(a_hat)
    emb = torch.from_numpy(gcn_embeddings(labels_dir, target, cfg, num_labels))
    path = head_prefix(model)
    features = getattr(model, "num_features", None) or model.get_submodule(path).in_features
    replace_module(model, path, GCNClassifier(emb, sparse_tensor(a_hat), features, cfg.hidden))
    log.info("ML-GCN head: %d labels, %d edges (density %.2g, %.2f neighbours per label), tau %.2f, p %.2f, %s",
             stats["labels"], stats["edges"], stats["density"], stats["mean_neighbours"], cfg.tau, cfg.p, cfg.variant)
    return stats
