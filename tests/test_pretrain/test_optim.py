"""LR schedules and the weight EMA against their definitions."""
import math

import pytest
import torch

from pretrain.config import OptimConfig
from pretrain.optim import build_ema, build_optimizer, lr_factor, param_groups


def test_warmup_then_cosine():
    cfg = OptimConfig(lr=0.4, warmup_steps=10, warmup_lr=0.04, schedule="cosine", min_lr=0.004)
    assert lr_factor(0, 110, 10, cfg) == pytest.approx(0.1)
    assert lr_factor(5, 110, 10, cfg) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(10, 110, 10, cfg) == pytest.approx(1.0)
    assert lr_factor(60, 110, 10, cfg) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(110, 110, 10, cfg) == pytest.approx(0.01)
    t = 0.3
    assert lr_factor(10 + 30, 110, 10, cfg) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def test_step_decay_per_epochs():
    cfg = OptimConfig(lr=0.01, schedule="step", step_every=90, step_gamma=0.1)
    spe = 7
    assert lr_factor(89 * spe, 10**6, spe, cfg) == pytest.approx(1.0)
    assert lr_factor(90 * spe, 10**6, spe, cfg) == pytest.approx(0.1)
    assert lr_factor(180 * spe + 3, 10**6, spe, cfg) == pytest.approx(0.01)


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 5, 5))
    groups = param_groups(model, 1e-4, True)
    assert groups[0]["weight_decay"] == 1e-4 and all(p.ndim > 1 for p in groups[0]["params"])
    assert groups[1]["weight_decay"] == 0 and all(p.ndim == 1 for p in groups[1]["params"])
    opt = build_optimizer(model, OptimConfig(name="sgd", nesterov=True, lr=0.2))
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["nesterov"]
    assert isinstance(build_optimizer(model, OptimConfig(name="adamw")), torch.optim.AdamW)


def test_ema_update_formula():
    model = torch.nn.Linear(2, 1)
    ema = build_ema(model, decay=0.9)
    before = ema.module.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, 0.9 * before + 0.1 * model.weight)


def test_backbone_lr_scale_gives_the_head_the_lr_and_the_backbone_a_tenth():
    """ML-GCN's get_config_optim: the pretrained layers at lr x lrp (0.1), the GCN at lr; the
    schedule scales both groups alike."""
    from pretrain.backbone import build_model, head_prefix
    from pretrain.config import ModelConfig
    model = build_model(ModelConfig(name="test_resnet"), 5)
    head = {id(p) for n, p in model.named_parameters() if n.startswith(head_prefix(model) + ".")}
    cfg = OptimConfig(lr=0.1, backbone_lr_scale=0.1, schedule="constant")
    opt = build_optimizer(model, cfg)
    seen = set()
    for g in opt.param_groups:
        ids = {id(p) for p in g["params"]}
        seen |= ids
        assert ids <= head or not ids & head                      # a group is all head or all backbone
        assert g["lr"] == pytest.approx(0.1 if ids & head else 0.01)
    assert seen == {id(p) for p in model.parameters()}
    assert any({id(p) for p in g["params"]} & head for g in opt.param_groups)
