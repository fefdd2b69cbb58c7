"""The ML-GCN recipe (configs/pretrain/mlgcn.yaml, issue 15 item 5) in the trainer on the example:
its 300-d label-vector requirement refuses other word vectors with one line, and with the
example's vectors it trains with the backbone at 0.1 x the GCN head's LR."""
import pytest

from conftest import REPO, pretrain_overrides
from pretrain.backbone import head_prefix
from pretrain.config import PretrainConfig
from pretrain.data import DataError
from pretrain.trainer import Trainer
from webtag.config import load_config

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
MLGCN = REPO / "configs" / "pretrain" / "mlgcn.yaml"
TINY = ["model.name=test_resnet", "loader.image_size=64", "loader.batch_size=8", "loader.workers=1",
        "loader.shuffle_buffer=16", "train.mixed_precision=no", "train.max_steps=2", "train.log_every=1",
        "train.checkpoint_every=0", "train.eval_every=0", "data.holdout_shards=1", "data.eval_batches=1"]


def test_mlgcn_recipe_refuses_label_vectors_of_another_width(shards_v1, mined_v1, tmp_path):
    cfg = load_config(PretrainConfig, MLGCN, pretrain_overrides(shards_v1, mined_v1, tmp_path / "a", *TINY))
    with pytest.raises(DataError, match="embedding_dim=300"):
        Trainer(cfg)


def test_mlgcn_recipe_trains_the_backbone_at_a_tenth_of_the_gcn_lr(shards_v1, mined_v1, tmp_path):
    cfg = load_config(PretrainConfig, MLGCN, pretrain_overrides(shards_v1, mined_v1, tmp_path / "b", *TINY,
                                                                "model.gcn.embedding_dim=null"))
    trainer = Trainer(cfg)
    model = trainer.bare_model()
    head = {id(p) for n, p in model.named_parameters() if n.startswith(head_prefix(model) + ".")}
    lrs = {bool({id(p) for p in g["params"]} & head): g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs[False] == pytest.approx(cfg.optim.lr * 0.1) and lrs[True] == pytest.approx(cfg.optim.lr)
    assert trainer.fit() == "finished"
