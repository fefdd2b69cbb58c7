"""A run folder on S3 (moto on loopback, through s3fs): pretraining reads its shards from s3://
and keeps its run folder at s3://, is SIGKILLed, and resumes from the URL on an empty stage (as a
job requeued on another node); finetuning starts from the URL and is evaluated from it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import PRETRAIN_EXAMPLE, REPO, machine_command, pretrain_overrides
from pipeline import schema
from pretrain import checkpoint as ckpt
from pretrain.run_mirror import RunMirror, run_folder
from text_mining import schema as tm_schema
from webtag.config import ConfigError
from webtag.remote_copy import publish_tree
from webtag.storage import location

FINETUNE = REPO / "configs" / "finetune" / "example.yaml"


def _env(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", WEBTAG_LOG="INFO", PYTHONPATH=str(REPO),
                **extra)


def _cli(*args, **kw):
    res = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=REPO, env=_env(**kw), capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, f"{args}\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    return res.stdout + res.stderr


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """The copies of URLs (labels, weights) in the test's folder, not in ~/.cache."""
    monkeypatch.setenv("WEBTAG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def s3_shards(shards_v1, bucket):
    url = f"{bucket}/shards"
    publish_tree(shards_v1, url, last=(schema.SIZES_FILE,))
    return url


@pytest.fixture
def s3_labels(mined_v1, bucket):
    url = f"{bucket}/labels"
    publish_tree(mined_v1, url, last=(tm_schema.COMPLETE_FILE,))
    return url


def _audit_once(text: str) -> None:
    seen: dict[int, list] = {}
    for line in text.splitlines():
        row = json.loads(line)
        seen.setdefault(row["epoch"], []).extend(row["shards"])
    assert seen and all(len(s) == len(set(s)) for s in seen.values()), seen


def test_train_from_s3_killed_then_resumed_from_the_url_on_an_empty_stage(s3_shards, s3_labels, bucket, tmp_path):
    """Shards, labels and the run folder all at s3:// (the labels copied once into the cache)."""
    run, total = f"{bucket}/runs/wt", 120
    overrides = pretrain_overrides(s3_shards, s3_labels, run, f"train.max_steps={total}", "loader.batch_size=4",
                                   "loader.workers=1", "train.log_every=5", "train.checkpoint_every=5",
                                   "train.keep_checkpoints=2", "data.holdout_shards=0")
    cmd = [sys.executable, "-m", "pretrain", "train", "--config", str(PRETRAIN_EXAMPLE), *overrides]
    mirror = RunMirror(location(run), tmp_path / "unused")
    log = tmp_path / "first.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([*cmd, f"train.stage_dir={tmp_path / 'node1'}"], cwd=REPO, env=_env(), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while len(mirror.remote_checkpoints()) < 2:   # two complete uploads: the pruning ran too
            assert proc.poll() is None, f"the run ended before the kill:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    kept = mirror.remote_checkpoints()
    newest = int(kept[-1].split("-")[1])
    assert 0 < newest < total and len(kept) <= 3, kept
    # what a kill during an upload leaves: a newer folder without its manifest, never resumed from
    fs = location(run).fs
    fs.pipe(f"{location(run).rpath}/checkpoints/{ckpt.checkpoint_name(newest + 50)}/model.safetensors", b"cut short")

    # requeued on another node: an empty stage; the checkpoint comes from the URL
    out = _cli("pretrain", "train", "--config", PRETRAIN_EXAMPLE, *overrides, f"train.stage_dir={tmp_path / 'node2'}")
    stage2 = tmp_path / "node2"
    assert f"downloaded checkpoint {kept[-1]} from {run}" in out
    assert f"resumed from {ckpt.checkpoint_root(stage2) / kept[-1]}: step {newest}" in out
    done = json.loads(location(f"{run}/finished.json").read_text())
    assert done["step"] == total   # where an uninterrupted run ends
    for name in ("backbone.safetensors", "model.safetensors", "config.yaml", "metrics.csv", "train.log"):
        assert location(f"{run}/{name}").read_bytes() == (stage2 / name).read_bytes(), name
    remote = mirror.remote_checkpoints()
    assert remote == [p.name for p in ckpt.list_checkpoints(stage2)] and remote[-1] == ckpt.checkpoint_name(total)
    assert not fs.exists(f"{location(run).rpath}/checkpoints/{ckpt.checkpoint_name(newest + 50)}")
    _audit_once(location(f"{run}/shards-rank0.jsonl").read_text())   # no shard trained twice across the kill
    steps = [int(r.split(",")[0]) for r in location(f"{run}/metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == total   # the killed run's rows and the resumed run's

    # finetune from the pretraining run at the URL into a run folder at a URL, then evaluate from it
    ft = f"{bucket}/runs/ft"
    out = _cli("finetune", "train", "--config", FINETUNE, f"init={run}", f"data.shards={s3_shards}",
               f"data.labels={s3_labels}", f"train.output_dir={ft}", "train.max_steps=4", "train.eval_every=4",
               "train.progress=false", "train.tensorboard=false")
    assert f"initialised from {run}" in out
    fs.invalidate_cache()   # this process listed the bucket before the runs wrote into it
    assert location(f"{ft}/best/model.safetensors").is_file() and location(f"{ft}/finished.json").is_file()
    out = _cli("finetune", "evaluate", "--checkpoint", f"{ft}/best", "--shards", s3_shards, "--workers", "1")
    fs.invalidate_cache()
    result = json.loads(location(f"{ft}/best/eval-val.json").read_text())
    assert result["images"] == 24 and f"top-1 {result['top1']:.4f}" in out
    best = json.loads(location(f"{ft}/best/model.json").read_text())
    assert abs(result["top1"] - best["val_top1"]) < 1e-9
    # the large-resolution stage continues the finetuned run at the URL, its LR schedule included
    out = _cli("finetune", "train", "--config", FINETUNE, f"continue_from={ft}", f"data.shards={s3_shards}",
               f"data.labels={s3_labels}", f"train.output_dir={tmp_path / 'big'}", "loader.image_size=80",
               "train.max_steps=1", "train.log_every=1", "train.progress=false", "train.tensorboard=false")
    assert "at 80 px, LR schedule from step 4" in out


def test_a_pipe_is_not_a_run_folder(tmp_path):
    with pytest.raises(ConfigError, match="not a pipe"):
        run_folder("pipe:cat {}", "")
    local, mirror = run_folder(str(tmp_path / "run"), "")
    assert local == tmp_path / "run" and mirror is None


def test_a_damaged_remote_checkpoint_falls_back_to_the_older_one(bucket, tmp_path):
    """Two complete remote checkpoints; the newer one's file was changed after upload (its sha256
    differs from the manifest's): the pull takes the older one."""
    src = tmp_path / "src"
    for step in (2, 4):
        folder = ckpt.checkpoint_root(src) / ckpt.checkpoint_name(step)
        folder.mkdir(parents=True)
        (folder / ckpt.STATE_FILE).write_text(json.dumps({"step": step}))
        (folder / "model.safetensors").write_bytes(bytes([step]) * 100)
        ckpt.write_manifest(folder)
    up = RunMirror(location(f"{bucket}/run"), src)
    for folder in ckpt.checkpoint_folders(src):
        up.push_checkpoint(folder)
    fs = location(bucket).fs
    fs.pipe(f"{location(bucket).rpath}/run/checkpoints/{ckpt.checkpoint_name(4)}/model.safetensors", b"\x00" * 100)
    stage = tmp_path / "stage"
    assert RunMirror(location(f"{bucket}/run"), stage).pull() == ckpt.checkpoint_name(2)
    path, _ = ckpt.choose_resume("auto", stage)
    assert path == ckpt.checkpoint_root(stage) / ckpt.checkpoint_name(2)


def test_two_machines_with_their_own_stage_are_refused(s3_shards, s3_labels, bucket, tmp_path):
    """Two "machines" on loopback (real gloo processes), each with its own $WEBTAG_STAGE_DIR: the
    RNG states of one would never reach the other's checkpoint, so the run refuses to start (both
    machines exit non-zero, nothing uploaded but the run id), one line naming train.stage_dir."""
    port = _free_port()
    overrides = pretrain_overrides(s3_shards, s3_labels, f"{bucket}/runs/two", "train.max_steps=2")
    procs = []
    for rank in (0, 1):
        cmd = machine_command(rank, port, overrides)
        env = _env(ACCELERATE_USE_CPU="1", WEBTAG_STAGE_DIR=str(tmp_path / f"node{rank}"))
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, text in zip(procs, logs):
        assert p.returncode != 0, text[-3000:]
    # the main process says it in one line (the launchers then add their own reports; machine 1's
    # agent may stop its process before it logs, once machine 0's has gone)
    text = logs[0]
    lines = [ln for ln in text.splitlines() if "do not see this folder" in ln]
    assert len(lines) == 1 and " ERROR pretrain: train.stage_dir=" in lines[0] and "rank(s) [1]" in lines[0], text[-3000:]
    assert 'File "' not in text.split("do not see this folder")[0], "a traceback before the error line"
    assert not location(f"{bucket}/runs/two/checkpoints").is_dir()


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
