"""train.log_with naming a tracker whose package is not installed (aim; wandb and mlflow-skinny are in the dev
extra): one line naming the key and the
extra to install, exit 2, no traceback."""
from __future__ import annotations

import importlib.util

import pytest

from interop_runs import COMMON, PRETRAIN, make_shards, run_cli


@pytest.mark.skipif(importlib.util.find_spec("aim") is not None, reason="aim is installed")
def test_missing_tracker_package_is_one_line_exit_2(example_v1, mined_v1, tmp_path):
    shards = make_shards(example_v1, mined_v1, tmp_path / "shards")
    res = run_cli("pretrain", "train", "--config", PRETRAIN, f"data.shards={shards}", f"data.labels={mined_v1}",
                  f"train.output_dir={tmp_path / 'run'}", "train.max_steps=1", "train.log_with=[aim]", *COMMON,
                  check=False)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert "train.log_with" in res.stderr and "webtag[aim]" in res.stderr, res.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
