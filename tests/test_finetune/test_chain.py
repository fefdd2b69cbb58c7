"""The whole chain through the command lines on CPU: pretrain -> finetune -> evaluate ->
pseudo-label -> shard the new labels -> finetune again, plus the large-resolution stage."""
import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

PRETRAIN = REPO / "configs" / "pretrain" / "example.yaml"
FINETUNE = REPO / "configs" / "finetune" / "example.yaml"


def run(*args):
    env = dict(os.environ, WEBTAG_LOG="INFO", OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, f"{args}\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    return res.stdout + res.stderr


def metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_pretrain_finetune_evaluate_pseudo_label_finetune_again(example_v1, mined_v1, shards_v1, tmp_path):
    common = ["train.progress=false", "train.tensorboard=false"]
    pt, ft, ft2, big = (tmp_path / n for n in ("pretrain", "finetune", "finetune2", "finetune-80px"))
    run("pretrain", "train", "--config", PRETRAIN, f"data.shards={shards_v1}", f"data.labels={mined_v1}",
        f"train.output_dir={pt}", "train.max_steps=6", *common)
    assert (pt / "backbone.safetensors").exists()

    log = run("finetune", "train", "--config", FINETUNE, f"init={pt}", f"data.shards={shards_v1}",
              f"data.labels={mined_v1}", f"train.output_dir={ft}", "train.max_steps=8", "train.eval_every=4", *common)
    assert f"initialised from {pt}" in log and "effective batch 32" in log
    rows = metrics(ft)
    assert [r["step"] for r in rows if r.get("val_top1")] == ["4", "8"]
    best = json.loads((ft / "best" / "model.json").read_text())
    assert best["val_top1"] == pytest.approx(max(float(r["val_top1"]) for r in rows if r.get("val_top1")), abs=1e-6)

    out = run("finetune", "evaluate", "--checkpoint", ft / "best", "--shards", shards_v1, "--workers", "1")
    result = json.loads((ft / "best" / "eval-val.json").read_text())
    assert result["images"] == 24 and f"top-1 {result['top1']:.4f}" in out
    assert abs(result["top1"] - best["val_top1"]) < 1e-9      # the same model, the same val shards

    labels2 = tmp_path / "labels-pseudo"
    out = run("finetune", "pseudo-label", "--checkpoints", ft, ft / "best", "--shards", shards_v1,
              "--labels", mined_v1, "--threshold", "0.2", "--out", labels2, "--workers", "1")
    report = json.loads((labels2 / "pseudo_labels.json").read_text())
    assert report["relabelled_from_shards"] == 128 and f"{report['changed']} labels changed" in out
    shards2 = tmp_path / "shards-pseudo"
    run("pipeline", "shard", "--webvision", example_v1, "--labels", labels2, "--out", shards2,
        "--max-size", "100KB", "--workers", "1")
    run("finetune", "train", "--config", FINETUNE, f"init={pt}", f"data.shards={shards2}", f"data.labels={labels2}",
        f"train.output_dir={ft2}", "train.max_steps=4", *common)
    assert (ft2 / "best" / "model.safetensors").exists()

    # large-resolution stage: the finetuned model (head included) at a larger size, LR continued
    log = run("finetune", "train", "--config", FINETUNE, f"continue_from={ft}", f"data.shards={shards_v1}",
              f"data.labels={mined_v1}", f"train.output_dir={big}", "loader.image_size=80", "train.max_steps=2",
              "train.log_every=1", *common)
    assert "at 80 px, LR schedule from step 8" in log
    last_lr = float(metrics(ft)[-1]["lr"])
    assert float(metrics(big)[0]["lr"]) <= last_lr   # step decay: never back up to the initial LR
    assert json.loads((big / "model.json").read_text())["image_size"] == 80
