"""train.log_with=[wandb] for real in offline mode: a tiny pretraining run leaves an offline run
folder with the resolved config (as the run's config) and the logged metrics' summary."""
from __future__ import annotations

import pytest

from interop_runs import COMMON, PRETRAIN, make_shards, run_cli

pytest.importorskip("wandb")


def test_wandb_offline_run_holds_config_and_metrics(example_v1, mined_v1, tmp_path):
    shards = make_shards(example_v1, mined_v1, tmp_path / "shards")
    wdir = tmp_path / "wandb-dir"
    wdir.mkdir()
    run_cli("pretrain", "train", "--config", PRETRAIN, f"data.shards={shards}", f"data.labels={mined_v1}",
            f"train.output_dir={tmp_path / 'run'}", "train.max_steps=3", "train.log_every=1",
            "train.log_with=[wandb]", *COMMON,
            env={"WANDB_MODE": "offline", "WANDB_DIR": str(wdir), "WANDB_SILENT": "true"})
    runs = sorted(p for p in wdir.rglob("offline-run-*") if p.is_dir())   # WANDB_DIR is honoured
    assert len(runs) == 1, list(tmp_path.rglob("*wandb*"))
    # wandb 0.31 keeps config and history only in the run's binary .wandb log (protobuf records, keys
    # and JSON values stored as text): the config keys, a renamed metric and the loss rows are there
    log = next(runs[0].glob("*.wandb")).read_bytes()
    assert b"train.max_steps" in log and str(shards).encode() in log
    assert b"holdout_p_at_1" in log
    assert log.count(b"loss") >= 3
