"""The recipes in configs/ (issue 14): every YAML loads into the dataclass of its stage with no
unknown key, the training recipes name a model timm knows, the published-number recipes cite their
source and figures, and the mini-WebVision setting selects the first 50 classes, Google only."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm

from conftest import REPO
from finetune.config import FinetuneConfig
from pipeline.shards import ShardConfig
from pretrain.config import PretrainConfig
from text_mining.config import TextMiningConfig
from webtag.config import load_config

CONFIGS = REPO / "configs"
STAGES = {"text_mining": TextMiningConfig, "pipeline": ShardConfig, "pretrain": PretrainConfig,
          "finetune": FinetuneConfig}
ALL = sorted(CONFIGS.rglob("*.yaml"))


def _cls(path: Path):
    return STAGES[path.relative_to(CONFIGS).parts[0]]


def test_every_stage_folder_has_a_dataclass():
    assert {p.relative_to(CONFIGS).parts[0] for p in ALL} <= set(STAGES)
    assert len(ALL) >= 14


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_recipe_loads_into_its_dataclass(path):
    cfg = load_config(_cls(path), path)      # unknown keys and wrong types raise ConfigError
    if isinstance(cfg, PretrainConfig):
        assert timm.is_model(cfg.model.name), f"{path}: model.name={cfg.model.name} is not a timm model"


@pytest.mark.parametrize("name,figures", [
    ("pretrain/wt.yaml", ["52.0/76.1", "53.4/76.8", "55.5/77.8"]),
    ("finetune/webvision.yaml", ["52.0/76.1", "53.4/76.8", "55.5/77.8"]),
    ("finetune/webvision_large.yaml", ["55.5/77.8"]),
    ("text_mining/mini_webvision.yaml", ["77.32/91.64", "75.20/90.84", "DivideMix"]),
    ("finetune/mini_webvision.yaml", ["77.32/91.64", "75.20/90.84", "DivideMix"]),
])
def test_published_recipes_cite_their_figures(name, figures):
    comment = "\n".join(line for line in (CONFIGS / name).read_text().splitlines() if line.startswith("#"))
    for figure in figures:
        assert figure in comment, f"configs/{name}: the top comment lacks {figure}"


def test_wechat_recipe_is_resnest101_from_wt_set_to_the_large_resolution_stage():
    wt = load_config(PretrainConfig, CONFIGS / "pretrain" / "wt.yaml")
    ft = load_config(FinetuneConfig, CONFIGS / "finetune" / "webvision.yaml")
    large = load_config(FinetuneConfig, CONFIGS / "finetune" / "webvision_large.yaml")
    assert wt.model.name == ft.model.name == large.model.name == "resnest101e"
    assert wt.data.target == "keywords" and ft.data.target == large.data.target == "class"
    assert ft.train.effective_batch == large.train.effective_batch == 2048
    assert large.continue_from.startswith(ft.train.output_dir)
    assert large.loader.image_size > ft.loader.image_size


def test_mini_webvision_selects_the_first_50_classes_google_only():
    tm = load_config(TextMiningConfig, CONFIGS / "text_mining" / "mini_webvision.yaml")
    assert tm.reader.classes == "0:50" and tm.reader.sources == ["google"]
    shard = load_config(ShardConfig, CONFIGS / "pipeline" / "mini_webvision.yaml")
    assert shard.classes == "0:50" and shard.sources == ["google"]
    ft = load_config(FinetuneConfig, CONFIGS / "finetune" / "mini_webvision.yaml")
    assert ft.model.name == "inception_resnet_v2" and ft.init == "" and ft.loader.image_size == 299
    assert ft.data.labels == "data/mini_mined" and ft.data.shards == "data/mini_shards"
