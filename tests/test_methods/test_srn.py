"""SRN: output shapes, the spatial softmax, staged freezing, and the four stages chained."""
import pytest
import torch

from pretrain.config import ModelConfig
from pretrain.backbone import build_model
from pretrain.srn import apply_stage, attach_srn


def srn_model(stage):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="test_resnet"), 7)
    head = attach_srn(model, "fc", "layer3", 7, grid=4, stage=stage)
    return model, head


def test_output_shapes_and_attention():
    model, head = srn_model(4)
    x = torch.randn(2, 3, 64, 64)
    model.train()
    assert model(x).shape == (2, 7)
    out = head.outputs
    assert out["attention"].shape == (2, 7, 4, 4) and out["confidence"].shape == (2, 7, 4, 4)
    assert torch.allclose(out["attention"].sum(dim=(2, 3)), torch.ones(2, 7), atol=1e-5)  # softmax over space
    for k in ("att", "sr", "cls", "final"):
        assert out[k].shape == (2, 7)
    assert torch.allclose(out["final"], 0.5 * out["cls"] + 0.5 * out["sr"])
    assert torch.allclose(out["att"], (out["attention"] * out["confidence"]).sum(dim=(2, 3)))
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), head.outputs["final"])
    # another input size: the feature map is pooled to the grid
    model.train()
    assert model(torch.randn(1, 3, 96, 96)).shape == (1, 7)


@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_staged_freezing(stage):
    model, head = srn_model(stage)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    srn = {n for n in dict(model.named_parameters()) if n.startswith(("fc.attention", "fc.confidence", "fc.fsr"))}
    if stage == 1:
        assert trainable == set(dict(model.named_parameters())) - srn and "fc.fc.weight" in trainable
    elif stage == 2:
        assert trainable == {n for n in srn if n.startswith(("fc.attention", "fc.confidence"))}
    elif stage == 3:
        assert trainable == {n for n in srn if n.startswith("fc.fsr")}
    else:
        assert trainable == set(dict(model.named_parameters()))
    model.train()
    bn = model.bn1   # a backbone BatchNorm: frozen in stages 2 and 3, so its statistics must not move
    before = bn.running_mean.clone()
    target = {1: "cls", 2: "att", 3: "sr", 4: "final"}[stage]
    y = model(torch.randn(2, 3, 64, 64))
    assert torch.equal(y, head.outputs[target])   # the stage's training output
    assert torch.equal(bn.running_mean, before) == (stage in (2, 3))
    # the stage's output depends on every parameter the stage trains (none is trained for nothing);
    # the SRN branches' own gradients are non-zero (timm zero-initialises the backbone's last BN
    # of each block, so some backbone gradients are exactly 0 at initialisation)
    y.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n in trainable)
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n in trainable & srn)


def test_bad_stage_and_layer():
    model, head = srn_model(2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with pytest.raises(ValueError, match="srn.stage"):
        apply_stage(model, head, 5)
    assert head.stage == 2 and {n for n, p in model.named_parameters() if p.requires_grad} == trainable   # unchanged
    with pytest.raises(ValueError, match="feature layers are"):
        attach_srn(build_model(ModelConfig(name="test_resnet"), 7), "fc", "layer9", 7, 4, 1)
