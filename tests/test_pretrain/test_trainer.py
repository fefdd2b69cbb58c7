"""The trainer in this process (one Accelerate process on CPU) on the example's shards."""
import json
import os

import pytest
import torch

from conftest import PRETRAIN_EXAMPLE, pretrain_overrides
from pretrain import checkpoint as ckpt
from pretrain.cli import main as cli_main
from pretrain.config import PretrainConfig
from pretrain.data import DataError
from pretrain.backbone import build_model
from pretrain.model import BACKBONE_WEIGHTS
from pretrain.control import CONTROL_ENV, NonFiniteLoss
from pretrain.state_io import load_state
from pretrain.trainer import FINISHED, Trainer
from webtag.config import ConfigError, load_config


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def make_cfg(shards, mined, out, *extra) -> PretrainConfig:
    return load_config(PretrainConfig, PRETRAIN_EXAMPLE, pretrain_overrides(shards, mined, out, *extra))


def shard_log(out, ranks=1):
    rows = []
    for r in range(ranks):
        path = out / f"shards-rank{r}.jsonl"
        if path.exists():
            rows += [dict(json.loads(ln), rank=r) for ln in path.read_text().splitlines()]
    return rows


def test_config_errors_name_the_key(shards_v1, mined_v1, tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.lrr.*valid keys under optim: .*lr"):
        make_cfg(shards_v1, mined_v1, tmp_path, "optim.lrr=0.1")
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        make_cfg(shards_v1, mined_v1, tmp_path, "train.epochs=many")
    with pytest.raises(ConfigError, match="loss.name"):
        make_cfg(shards_v1, mined_v1, tmp_path, "loss.name=focal")
    assert cli_main(["--config", str(PRETRAIN_EXAMPLE), "optim.lrr=1"]) == 2


def test_head_size_that_does_not_match_the_data_is_refused(shards_v1, mined_v1, tmp_path):
    import pyarrow.parquet as pq
    n_kw = pq.read_metadata(mined_v1 / "vocabulary.parquet").num_rows
    with pytest.raises(DataError, match=f"model.num_classes=7 but the data has {n_kw} keywords"):
        Trainer(make_cfg(shards_v1, mined_v1, tmp_path / "a", "model.num_classes=7"))
    n_cls = pq.read_metadata(mined_v1 / "classes.parquet").num_rows
    with pytest.raises(DataError, match=f"but the data has {n_cls} classes"):
        Trainer(make_cfg(shards_v1, mined_v1, tmp_path / "b", "data.target=weights", f"model.num_classes={n_kw}"))
    # labels from another run (a smaller vocabulary) than the shards were made with
    other = tmp_path / "other_labels"
    other.mkdir()
    pq.write_table(pq.read_table(mined_v1 / "vocabulary.parquet").slice(0, 3), other / "vocabulary.parquet")
    pq.write_table(pq.read_table(mined_v1 / "classes.parquet"), other / "classes.parquet")
    # (refused as a folder no text-mining merge finished: no complete.json, the fingerprint's marker)
    with pytest.raises(DataError, match="other_labels is not a finished text-mining output: .*complete.json is missing"):
        Trainer(make_cfg(shards_v1, other, tmp_path / "c"))
    with pytest.raises(DataError, match="holdout_shards=99"):
        Trainer(make_cfg(shards_v1, mined_v1, tmp_path / "d", "data.holdout_shards=99"))
    assert not (tmp_path / "a").exists()   # refused before the run folder was made


def _final_weights(cfg):
    trainer = Trainer(cfg)
    trainer.initial = {k: v.detach().clone() for k, v in trainer.accelerator.unwrap_model(trainer.model).state_dict().items()}
    assert trainer.fit() == "finished"
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, trainer


def test_gradient_accumulation_equals_the_large_batch(shards_v1, mined_v1, tmp_path):
    """k micro-batches of b accumulate to one step of k*b (a model without BatchNorm, no jitter)."""
    common = ["model.name=test_convnext", "augment.jitter=0", "optim.schedule=constant", "optim.warmup_steps=0",
              "optim.lr=0.5", "train.max_steps=3", "train.checkpoint_every=0", "data.holdout_shards=0",
              "loader.workers=1", "loader.sampling=instance"]
    big, _ = _final_weights(make_cfg(shards_v1, mined_v1, tmp_path / "big", *common,
                                     "loader.batch_size=16", "train.grad_accum=1"))
    small, trainer = _final_weights(make_cfg(shards_v1, mined_v1, tmp_path / "acc", *common,
                                             "loader.batch_size=8", "train.grad_accum=2"))
    assert trainer.effective_batch == 16 and trainer.step == 3
    worst = max((big[k] - small[k]).abs().max().item() for k in big if big[k].dtype.is_floating_point)
    moved = max((big[k] - trainer.initial[k]).abs().max().item() for k in big if big[k].dtype.is_floating_point)
    assert worst < 1e-5, worst
    assert moved > 1e-3   # the weights did change: the comparison is not vacuous


def test_run_writes_checkpoints_metrics_and_backbone(shards_v1, mined_v1, tmp_path):
    out = tmp_path / "run"
    cfg = make_cfg(shards_v1, mined_v1, out, "train.max_steps=12", "train.checkpoint_every=5",
                   "train.keep_checkpoints=2", "optim.ema_decay=0.9", "data.target=weights",
                   "loss.name=weighted_ce", "loader.sampling=sqrt", "train.tensorboard=true")
    trainer = Trainer(cfg)
    assert trainer.fit() == "finished"
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["step-00000010", "step-00000012"]
    state = ckpt.read_state(ckpt.list_checkpoints(out)[-1])
    assert state["step"] == 12 and state["config"]["data"]["target"] == "weights"
    assert set(state["loader"]) == {"epoch", "consumed"}
    rows = (out / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    for col in ("step", "loss", "lr", "images_per_s", "data_wait", "holdout_p@1", "holdout_p@5",
                "holdout_top1_web_label"):
        assert col in header
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "config.yaml").read_text().startswith("data:")
    # backbone: every tensor but the head, loadable into a fresh model
    from safetensors.torch import load_file
    weights = load_file(str(out / BACKBONE_WEIGHTS))
    fresh = build_model(cfg.model, 5)
    missing, unexpected = fresh.load_state_dict(weights, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
    assert (out / "ema" / BACKBONE_WEIGHTS).exists()
    assert json.loads((out / FINISHED).read_text())["step"] == 12


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(shards_v1, mined_v1, tmp_path, monkeypatch):
    out = tmp_path / "nan"
    monkeypatch.setenv(CONTROL_ENV, str(tmp_path / "control"))
    trainer = Trainer(make_cfg(shards_v1, mined_v1, out, "train.max_steps=20", "train.checkpoint_every=4",
                               "train.log_every=2"))
    real, calls = trainer.criterion.forward, []

    def poisoned(logits, targets, batch=None):
        calls.append(1)
        loss = real(logits, targets, batch)
        return loss * float("nan") if len(calls) >= 7 else loss

    trainer.criterion.forward = poisoned
    with pytest.raises(NonFiniteLoss, match="before step 8.*step-00000004"):
        trainer.fit()
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["step-00000004"]
    assert not (out / BACKBONE_WEIGHTS).exists() and not (out / FINISHED).exists()
    assert (tmp_path / "control" / "status").read_text().strip() == "failed"
    for t in load_state(ckpt.list_checkpoints(out)[0], "optimizer")["state"].values():
        assert torch.isfinite(t["momentum_buffer"]).all()


def test_stop_request_then_resume_ends_at_the_same_step(shards_v1, mined_v1, tmp_path, monkeypatch):
    out, control = tmp_path / "stop", tmp_path / "control"
    monkeypatch.setenv(CONTROL_ENV, str(control))
    extra = ["train.epochs=3", "loader.batch_size=4", "train.checkpoint_every=0", "train.log_every=3"]
    trainer = Trainer(make_cfg(shards_v1, mined_v1, out, *extra))
    total, per_epoch = trainer.total_steps, trainer.steps_per_epoch
    real, calls = trainer.criterion.forward, []

    def stop_at_step_8(logits, targets, batch=None):   # the Slurm trap writes this file on SIGUSR1
        calls.append(1)
        if len(calls) == 8:
            control.mkdir(exist_ok=True)
            (control / "stop").touch()
        return real(logits, targets, batch)

    trainer.criterion.forward = stop_at_step_8
    assert trainer.fit() == "stopped"
    assert (control / "status").read_text().strip() == "stopped"
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["step-00000009"]   # the next check after 8
    assert 9 % per_epoch != 0   # mid-epoch
    os.remove(control / "stop")
    resumed = Trainer(make_cfg(shards_v1, mined_v1, out, *extra))
    assert resumed.fit() == "finished"
    assert resumed.step == total and json.loads((out / FINISHED).read_text())["step"] == total
    # every shard at most once per epoch, and the first (interrupted) epoch read every shard once
    seen = {}
    for row in shard_log(out):
        for s in row["shards"]:
            seen.setdefault(row["epoch"], []).append(s)
    for epoch, shards in seen.items():
        assert len(shards) == len(set(shards)), (epoch, shards)
    assert sorted(seen[0]) == sorted(resumed.info.train_shards)
    steps = [int(r.split(",")[0]) for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == total


def test_resume_refuses_a_checkpoint_of_another_model(shards_v1, mined_v1, tmp_path, caplog):
    out = tmp_path / "run"
    assert Trainer(make_cfg(shards_v1, mined_v1, out, "train.max_steps=2")).fit() == "finished"
    with pytest.raises(DataError, match="model.name: 'test_resnet' -> 'test_convnext'"):
        Trainer(make_cfg(shards_v1, mined_v1, out, "train.max_steps=4", "model.name=test_convnext")).fit()
    # more steps and another LR are fine: listed, and the run continues from step 2
    import logging
    with caplog.at_level(logging.WARNING, logger="pretrain.trainer"):
        longer = Trainer(make_cfg(shards_v1, mined_v1, out, "train.max_steps=4", "optim.lr=0.01"))
        assert longer.fit() == "finished" and longer.step == 4
    assert "optim.lr: 0.05 -> 0.01" in caplog.text and "train.max_steps: 2 -> 4" in caplog.text


def test_compiled_model_with_ema_saves_plain_names(shards_v1, mined_v1, tmp_path):
    """torch.compile wraps the model (names gain ``_orig_mod.``): EMA, evaluation and the
    backbone file work on the bare module."""
    out = tmp_path / "compiled"
    trainer = Trainer(make_cfg(shards_v1, mined_v1, out, "model.compile=true", "train.max_steps=2",
                               "optim.ema_decay=0.5", "loader.batch_size=8"))
    assert trainer.fit() == "finished"
    from safetensors.torch import load_file
    names = set(load_file(str(out / BACKBONE_WEIGHTS)))
    assert names and not any("_orig_mod" in n for n in names)
    assert set(load_file(str(out / "ema" / BACKBONE_WEIGHTS))) == names
