"""Files that would run code: crafted pickles in a checkpoint folder, in a labels folder and as a
user-named embedding file. Each would create a marker file when unpickled; it must never appear."""
import json
import logging
import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from conftest import PRETRAIN_EXAMPLE, pretrain_overrides
from pretrain import checkpoint as ckpt
from pretrain.cli import main as cli_main
from pretrain.config import PretrainConfig
from pretrain.data import DataError
from pretrain.gcn import load_embedding_matrix
from pretrain.trainer import FINISHED, Trainer
from text_mining.embed import LEGACY_FILE, VECTORS_FILE, WORDS_FILE, WordVectorsError, load_word_vectors
from webtag.config import load_config
from webtag.safe_pickle import UnsafePickle, load_data_pickle

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
RUN = ["train.max_steps=2", "train.checkpoint_every=1", "train.log_every=1", "loader.batch_size=8",
       "data.holdout_shards=0"]


class Payload:
    """Unpickling this calls open(marker, "w"): the file appears if the pickle is ever loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def evil_pickle(path, marker):
    path.write_bytes(pickle.dumps(Payload(marker)))


def make_cfg(shards, mined, out, *extra):
    return load_config(PretrainConfig, PRETRAIN_EXAMPLE, pretrain_overrides(shards, mined, out, *RUN, *extra))


def test_crafted_accelerate_pickles_in_a_checkpoint_are_never_loaded(shards_v1, mined_v1, tmp_path, caplog):
    out = tmp_path / "run"
    assert Trainer(make_cfg(shards_v1, mined_v1, out, "train.max_steps=1")).fit() == "finished"
    newest = ckpt.list_checkpoints(out)[-1]
    marker = tmp_path / "pwned"
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl"):   # what Accelerate's load_state unpickles
        torch.save(Payload(marker), newest / name)                     # as Accelerate writes them: torch.save
    (out / FINISHED).unlink()
    with caplog.at_level(logging.INFO, logger="pretrain.trainer"):
        trainer = Trainer(make_cfg(shards_v1, mined_v1, out))
        assert trainer.fit() == "finished" and trainer.step == 2
    assert not marker.exists()
    assert f"resumed from {newest}" in caplog.text           # the checkpoint itself is intact: used
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl"):
        assert f"{name} is not in its manifest: ignored (never loaded)" in caplog.text


@pytest.fixture
def labels_with_legacy_word2vec(mined_v1, tmp_path):
    """A copy of a labels folder whose word vectors are a (crafted) gensim pickle, as before."""
    labels = tmp_path / "labels"
    shutil.copytree(mined_v1, labels)
    vocab = labels / "_work" / "vocabulary"
    (vocab / VECTORS_FILE).unlink()
    (vocab / WORDS_FILE).unlink()
    marker = tmp_path / "pwned"
    evil_pickle(vocab / LEGACY_FILE, marker)
    return labels, marker


def test_a_crafted_word2vec_kv_in_a_labels_folder_is_refused(shards_v1, labels_with_legacy_word2vec, tmp_path,
                                                             capsys):
    labels, marker = labels_with_legacy_word2vec
    with pytest.raises(WordVectorsError, match="word2vec.kv: word vectors in gensim's pickle format are not loaded"):
        load_word_vectors(labels / "_work" / "vocabulary")    # text mining's tag step reads them so
    capsys.readouterr()
    code = cli_main(["--config", str(PRETRAIN_EXAMPLE),
                     *pretrain_overrides(shards_v1, labels, tmp_path / "gcn", *RUN, "model.head=gcn",
                                         "model.gcn.hidden=8")])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists(), err
    errors = [ln for ln in err.splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and "word2vec.kv" in errors[0] and "rerun the vocabulary step" in errors[0], err
    assert "Traceback" not in err


def test_word_vectors_round_trip_without_pickle(mined_v1):
    vocab = mined_v1 / "_work" / "vocabulary"
    assert not (vocab / LEGACY_FILE).exists()
    kv = load_word_vectors(vocab)
    matrix = np.load(vocab / VECTORS_FILE, allow_pickle=False)
    words = json.loads((vocab / WORDS_FILE).read_text())
    assert kv.vectors.dtype == np.float32 and np.array_equal(kv.vectors, matrix) and kv.index_to_key == words
    assert all(np.array_equal(kv[w], matrix[i]) for i, w in enumerate(words[:20]))


def test_a_crafted_gcn_embeddings_pickle_is_refused(shards_v1, mined_v1, tmp_path, capsys):
    import pyarrow.parquet as pq
    n = pq.read_metadata(mined_v1 / "vocabulary.parquet").num_rows
    marker = tmp_path / "pwned"
    evil_pickle(tmp_path / "evil.pkl", marker)
    with pytest.raises(DataError, match=r"evil.pkl: refused to unpickle io.open"):
        load_embedding_matrix(tmp_path / "evil.pkl", n)
    capsys.readouterr()
    code = cli_main(["--config", str(PRETRAIN_EXAMPLE),
                     *pretrain_overrides(shards_v1, mined_v1, tmp_path / "gcn", *RUN, "model.head=gcn",
                                         "model.gcn.hidden=8", f"model.gcn.embeddings={tmp_path / 'evil.pkl'}")])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists(), err
    errors = [ln for ln in err.splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and "evil.pkl: refused to unpickle io.open" in errors[0] and "Traceback" not in err
    # an .npy that needs pickle (an object array) is refused too; ML-GCN's plain array pickles load
    np.save(tmp_path / "obj.npy", np.array([Payload(marker)] * n, dtype=object).reshape(n, 1), allow_pickle=True)
    with pytest.raises(DataError, match="obj.npy: not a numeric .npy matrix"):
        load_embedding_matrix(tmp_path / "obj.npy", n)
    assert not marker.exists()
    glove = np.random.default_rng(0).standard_normal((n, 5)).astype(np.float64)
    for protocol in (2, 4, 5):
        (tmp_path / "glove.pkl").write_bytes(pickle.dumps(glove, protocol=protocol))
        assert np.array_equal(load_embedding_matrix(tmp_path / "glove.pkl", n), glove.astype(np.float32))


def test_the_restricted_unpickler_accepts_data_and_refuses_calls(tmp_path):
    marker = tmp_path / "pwned"
    data = {"vectors": np.arange(6, dtype=np.float32).reshape(2, 3), "names": ["a", "b"], "k": (1, 2.5, None),
            "s": {1, 2}, "x": np.float64(3.0), "b": b"\x00\x01"}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        (tmp_path / "ok.pkl").write_bytes(pickle.dumps(data, protocol=protocol))
        back = load_data_pickle(tmp_path / "ok.pkl")
        assert np.array_equal(back["vectors"], data["vectors"]) and back["k"] == data["k"] and back["s"] == {1, 2}
    for payload in (Payload(marker), [1, {"nested": Payload(marker)}]):
        (tmp_path / "evil.pkl").write_bytes(pickle.dumps(payload))
        with pytest.raises(UnsafePickle, match="evil.pkl: refused to unpickle io.open"):
            load_data_pickle(tmp_path / "evil.pkl")
    (tmp_path / "sys.pkl").write_bytes(pickle.dumps(os.system))
    with pytest.raises(UnsafePickle, match="refused to unpickle posix.system"):
        load_data_pickle(tmp_path / "sys.pkl")
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(data)[:40])
    with pytest.raises(UnsafePickle, match="cut.pkl: not a readable pickle"):
        load_data_pickle(tmp_path / "cut.pkl")
    assert not marker.exists()
