"""Short CPU training runs with each method option the trainer has so far, and the graph CLI."""
import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
import torch

from conftest import PRETRAIN_EXAMPLE, REPO, pretrain_overrides
from pretrain.config import PretrainConfig
from pretrain.gcn import GCNClassifier
from pretrain.model import BACKBONE_WEIGHTS
from pretrain.multigrain import GeM
from pretrain.trainer import Trainer
from webtag.config import load_config


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def train(shards, mined, out, *extra):
    cfg = load_config(PretrainConfig, PRETRAIN_EXAMPLE,
                      pretrain_overrides(shards, mined, out, "train.max_steps=3", "loader.batch_size=8", *extra))
    trainer = Trainer(cfg)
    trainer.initial = {k: v.detach().clone() for k, v in trainer.bare_model().state_dict().items()}
    assert trainer.fit() == "finished"
    return trainer


def test_gem_pooling_option(shards_v1, mined_v1, tmp_path):
    trainer = train(shards_v1, mined_v1, tmp_path / "gem", "model.pooling=gem", "model.gem_learnable=true",
                    "model.gem_p=3")
    gem = [m for m in trainer.bare_model().modules() if isinstance(m, GeM)]
    assert len(gem) == 1 and isinstance(gem[0].p, torch.nn.Parameter)
    assert gem[0].p.item() != 3.0          # p learned


@pytest.mark.parametrize("variant", ["paper", "original"])
def test_gcn_head_option(shards_v1, mined_v1, tmp_path, variant):
    extra = [f"model.gcn.variant={variant}", "model.gcn.hidden=32"]
    if variant == "original":   # a provided embedding matrix instead of text mining's word vectors
        n = pq.read_metadata(mined_v1 / "vocabulary.parquet").num_rows
        np.save(tmp_path / "emb.npy", np.random.default_rng(0).standard_normal((n, 12)).astype(np.float32))
        extra.append(f"model.gcn.embeddings={tmp_path / 'emb.npy'}")
    out = tmp_path / variant
    trainer = train(shards_v1, mined_v1, out, "model.head=gcn", *extra)
    head = trainer.bare_model().fc
    assert isinstance(head, GCNClassifier)
    assert not torch.equal(head.gc2.weight, trainer.initial["fc.gc2.weight"])   # the GCN trained
    from safetensors.torch import load_file
    names = set(load_file(str(out / BACKBONE_WEIGHTS)))
    assert names and not any(n.startswith("fc.") for n in names)   # the backbone file holds no head
    ckpt = sorted((out / "checkpoints").iterdir())[-1]
    assert "fc.a_values" in load_file(str(ckpt / "model.safetensors"))   # the graph is saved with the model


def test_graph_cli_writes_matrix_and_statistics(mined_v1, tmp_path):
    out = tmp_path / "graph.npz"
    res = subprocess.run([sys.executable, "-m", "pretrain", "graph", "--labels", str(mined_v1), "--tau", "0.3",
                          "--p", "0.25", "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    a = sp.load_npz(out)
    stats = json.loads(out.with_suffix(".json").read_text())
    n = pq.read_metadata(mined_v1 / "vocabulary.parquet").num_rows
    assert a.shape == (n, n) and stats["labels"] == n and stats["tau"] == 0.3
    assert np.allclose(np.asarray(a.sum(axis=1)).ravel(), 1.0)   # the paper's variant: rows sum to 1
    assert f"{stats['edges']} edges" in res.stdout


def test_multigrain_options_gem_repeated_augmentation_and_margin_loss(shards_v1, mined_v1, tmp_path):
    trainer = train(shards_v1, mined_v1, tmp_path / "mg", "model.pooling=gem", "loader.repeat_aug=2",
                    "loss.margin_lambda=0.5", "data.target=weights", "loss.name=weighted_ce")
    assert trainer.criterion.margin.beta.item() != 1.2     # beta learned
    ckpt = sorted((tmp_path / "mg" / "checkpoints").iterdir())[-1]
    from safetensors.torch import load_file
    assert "beta" in load_file(str(ckpt / "criterion-0.safetensors"))          # beta saved with the run


def test_srn_four_stages_chained(shards_v1, mined_v1, tmp_path):
    from pretrain.srn import SRNHead
    prev = None
    for stage in (1, 2, 3, 4):
        extra = ["model.head=srn", f"model.srn.stage={stage}", "model.srn.grid=4", "train.max_steps=2"]
        if prev:
            extra.append(f"model.init_weights={prev}")
        trainer = train(shards_v1, mined_v1, tmp_path / f"stage{stage}", *extra)
        model = trainer.bare_model()
        assert isinstance(model.fc, SRNHead) and model.fc.stage == stage
        after = model.state_dict()
        moved = {k for k in after if after[k].dtype.is_floating_point and not torch.equal(after[k], trainer.initial[k])}
        srn_parts = ("fc.attention", "fc.confidence", "fc.fsr")
        if stage == 2:
            assert moved and all(k.startswith(("fc.attention", "fc.confidence")) for k in moved)
        if stage == 3:
            assert moved and all(k.startswith("fc.fsr") for k in moved)
        if stage == 1:
            assert not any(k.startswith(srn_parts) for k in moved)
        prev = tmp_path / f"stage{stage}"


def test_retrieve_and_multilabel_evaluate_commands(shards_v1, mined_v1, tmp_path):
    """A GeM model trained with the margin loss, reloaded from model.json as trained (GeM p
    included), then `finetune retrieve` (with whitening) and `finetune evaluate --target keywords`."""
    from finetune.cli import main
    out = tmp_path / "mg"
    train(shards_v1, mined_v1, out, "model.pooling=gem", "model.gem_learnable=true", "loader.repeat_aug=2",
          "loss.margin_lambda=0.5", "loss.name=bce")
    from pretrain.model import load_model
    model, info = load_model(out)
    assert any(isinstance(m, GeM) for m in model.modules()) and info["model_config"]["pooling"] == "gem"
    assert main(["retrieve", "--checkpoint", str(out), "--shards", str(shards_v1), "--queries", "val", "--gallery",
                 "val", "--k", "3", "--fit-whitening", "train", "--workers", "1",
                 "--image-size", "80", "--gem-p", "4"]) == 0
    r = json.loads((out / "retrieval.json").read_text())
    assert r["queries"] == 24 and r["gallery"] == 24 and r["whitened"] and 0 <= r["mAP"] <= 1
    assert r["image_size"] == 80 and r["queries_split"] == r["gallery_split"] == str(shards_v1 / "val")
    assert (out / "whitening.npz").exists()
    assert main(["evaluate", "--checkpoint", str(out), "--shards", str(shards_v1), "--split", "train", "--target",
                 "keywords", "--workers", "1"]) == 0
    m = json.loads((out / "eval-train-keywords.json").read_text())
    assert m["images"] == 128 and 0 <= m["mAP"] <= 1 and {"CP", "CR", "CF1", "OP", "OR", "OF1"} <= set(m)
