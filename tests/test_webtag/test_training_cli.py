"""webtag.cli: the training entry shared by pretrain and finetune, with its exit statuses."""
import subprocess
import sys
from dataclasses import dataclass

import pytest

from webtag.cli import EXIT_BAD_INPUT, EXIT_NONFINITE, EXIT_OK, run_training


class BadData(ValueError):
    pass


class Diverged(RuntimeError):
    pass


@dataclass
class Cfg:
    outcome: str = "ok"


class FakeTrainer:
    def __init__(self, cfg: Cfg):
        self.cfg = cfg

    def fit(self):
        if self.cfg.outcome == "data":
            raise BadData("the shards do not fit the labels")
        if self.cfg.outcome == "nan":
            raise Diverged("loss is nan")
        if self.cfg.outcome == "bug":
            raise KeyError("a bug is not an input error")


def run(*argv):
    return run_training(list(argv), Cfg, FakeTrainer, "accelerate launch pretrain/main.py", "YAML", "doc",
                        input_errors=(BadData,), nonfinite_errors=(Diverged,))


def test_exit_statuses(caplog):
    assert run("outcome=ok") == EXIT_OK == 0
    assert run("outcom=ok") == EXIT_BAD_INPUT == 2                  # ConfigError: always bad input
    assert run("outcome=data") == EXIT_BAD_INPUT
    assert run("outcome=nan") == EXIT_NONFINITE == 3
    assert "the shards do not fit the labels" in caplog.text and "loss is nan" in caplog.text
    assert {r.name for r in caplog.records} == {"pretrain"}
    with pytest.raises(KeyError):
        run("outcome=bug")


def test_webtag_imports_no_stage():
    code = ("import sys, webtag.cli, webtag.atomic, webtag.parallel; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pretrain', 'finetune', 'pipeline', 'text_mining')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
