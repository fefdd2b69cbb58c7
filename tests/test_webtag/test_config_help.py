"""Discoverable configs: ``train --help`` lists every config key with its type, default and a
description; ``--print-config`` prints the resolved YAML; ``python -m pretrain --help`` exits 0."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Optional

import pytest
import yaml

from conftest import REPO
from finetune.config import FinetuneConfig
from pretrain.config import PretrainConfig
from webtag.config import from_dict
from webtag.config_help import config_keys, field_help


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("stage,cls", [("pretrain", PretrainConfig), ("finetune", FinetuneConfig)])
def test_train_help_lists_every_key_with_type_default_and_description(stage, cls):
    res = _cli(stage, "train", "--help")
    assert res.returncode == 0, res.stderr
    rows = config_keys(cls)
    assert len(rows) > 80
    for key, tp, default, text in rows:
        assert text, f"{key} has no description (a comment beside the field, or metadata help)"
        assert f"  {key} ({tp}, default {default})" in res.stdout, key
    # the subclass's own defaults are the ones shown
    lr = next(r for r in rows if r[0] == "optim.lr")
    assert lr[2] == str(cls().optim.lr)


def test_descriptions_come_from_metadata_or_the_source_comment():
    @dataclasses.dataclass
    class Inner:
        a: int = 1           # the first line
        #                      and its continuation
        b: str = "x#y"       # after a default holding a hash
        c: Optional[int] = dataclasses.field(default=None, metadata={"help": "from metadata"})

    helps = field_help(Inner)
    assert helps == {"a": "the first line and its continuation", "b": "after a default holding a hash",
                     "c": "from metadata"}


def test_print_config_prints_the_resolved_yaml_and_exits(tmp_path):
    res = _cli("finetune", "train", "--config", REPO / "configs" / "finetune" / "example.yaml", "--print-config",
               "optim.lr=0.3", f"train.output_dir={tmp_path / 'never'}")
    assert res.returncode == 0, res.stderr
    cfg = from_dict(FinetuneConfig, yaml.safe_load(res.stdout))
    assert cfg.optim.lr == 0.3 and cfg.model.name == "test_resnet"
    assert not (tmp_path / "never").exists()          # nothing ran
    bad = _cli("pretrain", "train", "--print-config", "optim.lrr=1")
    assert bad.returncode == 2 and "optim.lrr" in bad.stderr and "Traceback" not in bad.stderr


def test_pretrain_help_exits_0():
    res = _cli("pretrain", "--help")
    assert res.returncode == 0 and "pretrain train" in res.stdout
    assert _cli("pretrain").returncode == 2
