"""Multi-task multi-label pretraining (issue 15, item 8; the slide's future work): one backbone
with a WT-Set head (keywords) and an LW-Set head (label weights over the classes) trained together
in this process on the example's shards; both heads learn, and the exported backbone loads in
finetuning as a one-head run's does."""
import pytest
import torch

from conftest import PRETRAIN_EXAMPLE, pretrain_overrides
from finetune.init import load_backbone
from pretrain.backbone import build_model, head_prefix
from pretrain.config import ModelConfig, PretrainConfig
from pretrain.criterion import MultiTaskCriterion
from pretrain.losses import batch_targets
from pretrain.trainer import Trainer
from webtag.config import ConfigError, load_config

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def head_losses(trainer):
    """The mean WT-Set and LW-Set losses of the two heads on the training shards (what they fit)."""
    crit = trainer.criterion
    loader, _ = trainer.eval_loader(trainer.info.train_dir, trainer.info.train_shards)
    sums, n = torch.zeros(2), 0
    with torch.no_grad():
        for (logits,), batch, keep in trainer.eval_outputs(loader):
            emb = crit._embedding[keep]
            wt_t = batch_targets(batch, "keywords", trainer.info.num_keywords, "cpu", trainer.cfg.loss.reduction)[keep]
            lw_t = batch_targets(batch, "weights", trainer.info.num_classes, "cpu")[keep]
            sums += torch.stack([crit.inner.loss(logits, wt_t), crit.lw_loss(crit.lw_logits(emb), lw_t)]) * len(logits)
            n += len(logits)
    return (sums / n).tolist()


def test_both_heads_learn_and_the_backbone_loads_in_finetuning(shards_v1, mined_v1, tmp_path):
    out = tmp_path / "mt"
    cfg = load_config(PretrainConfig, PRETRAIN_EXAMPLE, pretrain_overrides(
        shards_v1, mined_v1, out, "loss.multitask.lw_weight=1.0", "loss.multitask.wt_weight=1.0",
        "train.max_steps=40", "optim.lr=0.05", "optim.warmup_steps=0", "optim.schedule=constant",
        "train.checkpoint_every=0", "train.eval_every=0"))
    trainer = Trainer(cfg)
    assert isinstance(trainer.criterion, MultiTaskCriterion)
    wt0, lw0 = head_losses(trainer)
    assert trainer.fit() == "finished"
    wt1, lw1 = head_losses(trainer)
    assert wt1 < wt0 and lw1 < lw0, (wt0, wt1, lw0, lw1)

    # the backbone as today: every tensor but the WT-Set classifier, no LW-Set head in it
    model = build_model(ModelConfig(name="test_resnet"), trainer.info.num_classes)
    info = load_backbone(model, out)
    trained = trainer.bare_model().state_dict()
    head = head_prefix(model) + "."
    for k, v in model.state_dict().items():
        if not k.startswith(head):
            assert torch.equal(v, trained[k].cpu()), k
    assert info["target"] == "keywords"


def test_multitask_needs_the_keyword_target(shards_v1, mined_v1, tmp_path):
    cfg = load_config(PretrainConfig, PRETRAIN_EXAMPLE, pretrain_overrides(
        shards_v1, mined_v1, tmp_path, "loss.multitask.lw_weight=1.0", "data.target=weights",
        "loss.name=weighted_ce"))
    with pytest.raises(ConfigError, match="data.target=keywords"):
        Trainer(cfg)
