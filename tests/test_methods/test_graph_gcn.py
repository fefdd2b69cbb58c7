"""ML-GCN: the correlation matrix against the paper's equations on a hand-made table, the GCN's
normalisation, the head, and the label embeddings."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pretrain.gcn import GCNClassifier, label_embeddings, sparse_tensor
from pretrain.graph import (binary_adjacency, cooccurrence, graph_stats, label_graph, original_code_adjacency,
                            reweighted, symmetric_normalise)

# 4 labels over 10 images. N = [6, 4, 2, 3]; M_01 = 3, M_02 = 1, M_12 = 1, M_03 = 0, label 3 alone
LABELS = [[0, 1], [0, 1], [0, 1], [0, 2], [0], [0], [1, 2], [3], [3], [3]]


def test_cooccurrence_counts():
    m, n = cooccurrence(LABELS, 4)
    assert n.tolist() == [6, 4, 2, 3]
    dense = m.toarray()
    assert dense[0, 1] == dense[1, 0] == 3 and dense[0, 2] == 1 and dense[1, 2] == 1 and dense[0, 3] == 0
    assert sp.issparse(m)


def test_binary_and_reweighted_match_the_equations():
    m, n = cooccurrence(LABELS, 4)
    # P_01 = 3/6 = .5, P_10 = 3/4 = .75, P_02 = 1/6, P_20 = 1/2, P_12 = 1/4, P_21 = 1/2
    a = binary_adjacency(m, n, tau=0.4).toarray()
    assert a.tolist() == [[0, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
    p = 0.2
    r = reweighted(sp.csr_matrix(a), p).toarray()
    expected = np.array([[1 - p, p, 0, 0], [p, 1 - p, 0, 0], [p / 2, p / 2, 1 - p, 0], [0, 0, 0, 1.0]])
    assert np.allclose(r, expected)
    assert np.allclose(r.sum(axis=1), 1.0)                     # rows sum to 1 ...
    assert np.allclose(symmetric_normalise(sp.csr_matrix(r)).toarray(), r)   # ... so D = I leaves it
    assert not np.allclose(r, r.T)                              # and it stays asymmetric
    assert r[3, 3] == 1.0                                       # no neighbour: only the self-loop


def test_original_code_variant():
    m, n = cooccurrence(LABELS, 4)
    a = binary_adjacency(m, n, 0.4)
    got = original_code_adjacency(a).toarray()
    b = a.toarray() * 0.25 / (a.toarray().sum(0, keepdims=True) + 1e-6) + np.eye(4)
    d = np.diag(np.power(b.sum(1), -0.5))
    assert np.allclose(got, (b @ d).T @ d)
    assert not np.allclose(got, label_graph(LABELS, 4, 0.4, 0.2).toarray())   # close to, not equal to, p = 0.2


def test_graph_is_sparse_for_a_large_vocabulary():
    rng = np.random.default_rng(0)
    lists = [rng.choice(35000, size=5, replace=False) for _ in range(2000)]
    a_hat = label_graph(lists, 35000, tau=0.4, p=0.2)
    assert sp.issparse(a_hat) and a_hat.shape == (35000, 35000) and a_hat.nnz <= 35000 + 2000 * 5 * 4   # self-loops + co-occurring pairs
    stats = graph_stats(a_hat)
    assert stats["labels"] == 35000 and 0 <= stats["density"] < 1e-4


def test_gcn_head_shapes_and_gradients():
    torch.manual_seed(0)
    a_hat = sparse_tensor(label_graph(LABELS, 4))
    head = GCNClassifier(torch.randn(4, 300), a_hat, feature_dim=16, hidden=32)
    x = torch.randn(3, 16, requires_grad=True)
    y = head(x)
    assert y.shape == (3, 4)
    w = head.classifiers()
    assert torch.allclose(y, x @ w.t(), atol=1e-6)
    # the classifiers are A_hat LeakyReLU(A_hat E W1) W2 (the last layer without activation)
    dense = a_hat.to_dense()
    h = torch.nn.functional.leaky_relu(dense @ (head.embeddings @ head.gc1.weight), 0.2)
    assert torch.allclose(w, dense @ (h @ head.gc2.weight), atol=1e-5)
    y.sum().backward()
    assert head.gc1.weight.grad is not None and head.gc1.weight.grad.abs().sum() > 0


def test_label_embeddings_average_words_and_fall_back():
    vectors = {"cape": np.array([1.0, 0.0]), "may": np.array([0.0, 1.0]), "warbler": np.array([1.0, 1.0])}
    emb, missing = label_embeddings([["Cape May warbler"], ["warbler"], ["zzz"]], vectors, dim=2)
    assert np.allclose(emb[0], [2 / 3, 2 / 3]) and np.allclose(emb[1], [1, 1])
    assert missing == [2] and np.isclose(np.linalg.norm(emb[2]), 1.0)
    again, _ = label_embeddings([["Cape May warbler"], ["warbler"], ["zzz"]], vectors, dim=2)
    assert np.allclose(emb, again)                     # the fallback is deterministic


def test_gcn_embedding_dim_is_checked(tmp_path):
    """The ML-GCN recipe asks for 300-d label vectors (model.gcn.embedding_dim): another width is
    refused with one line naming the file."""
    import numpy as np
    from pretrain.data import DataError
    from pretrain.gcn import load_embedding_matrix
    path = tmp_path / "emb.npy"
    np.save(path, np.zeros((4, 64), dtype=np.float32))
    assert load_embedding_matrix(path, 4, dim=64).shape == (4, 64)
    with pytest.raises(DataError, match="300"):
        load_embedding_matrix(path, 4, dim=300)
