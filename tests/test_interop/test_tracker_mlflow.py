"""train.log_with=[mlflow] for real: a tiny pretraining run into an MLflow file store holds the loss
series and the resolved config as the run's params (MLflow 3 wants MLFLOW_ALLOW_FILE_STORE=true
for a file store)."""
from __future__ import annotations

import pytest

from interop_runs import COMMON, PRETRAIN, make_shards, run_cli

pytest.importorskip("mlflow")


def test_mlflow_file_store_holds_metrics_and_params(example_v1, mined_v1, tmp_path):
    shards = make_shards(example_v1, mined_v1, tmp_path / "shards")
    store = tmp_path / "mlruns"
    run_cli("pretrain", "train", "--config", PRETRAIN, f"data.shards={shards}", f"data.labels={mined_v1}",
            f"train.output_dir={tmp_path / 'run'}", "train.max_steps=3", "train.log_every=1",
            "train.log_with=[mlflow]", *COMMON, env={"MLFLOW_TRACKING_URI": store.as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"})
    import os
    import mlflow
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    client = mlflow.tracking.MlflowClient(tracking_uri=store.as_uri())
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1, runs
    run = runs[0]
    assert run.data.params.get("train.max_steps") == "3", sorted(run.data.params)[:20]
    assert run.data.params.get("data.shards") == str(shards)
    assert "holdout_p_at_1" in run.data.metrics, sorted(run.data.metrics)   # MLflow refuses "@" in names
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert steps == [1, 2, 3], (steps, sorted(run.data.metrics))
