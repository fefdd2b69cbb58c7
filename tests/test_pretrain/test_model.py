"""The backbones the paper's tables use build by timm name with a head sized from the data."""
import pytest
import torch

from pretrain.config import ModelConfig
from pretrain.backbone import build_model, head_prefix


@pytest.mark.parametrize("name,head", [("resnet50", "fc"), ("resnext101_32x8d", "fc"), ("resnest101e", "fc"),
                                       ("resnest200e", "fc"), ("efficientnet_b4", "classifier")])
def test_paper_backbones_build_with_the_data_head(name, head):
    with torch.device("meta"):   # no weights allocated: only the structure is checked
        model = build_model(ModelConfig(name=name), 35000)
    assert head_prefix(model) == head
    assert model.get_classifier().out_features == 35000
    names = set(model.state_dict())
    assert {n for n in names if n.startswith(head + ".")} == {f"{head}.weight", f"{head}.bias"}


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="not a timm model"):
        build_model(ModelConfig(name="resnet_five_thousand"), 10)
