"""Checkpoints that real clusters damage: a file of the newest checkpoint truncated, a flipped
byte, a missing file or manifest, and a disk that fills up while saving (a real tiny tmpfs)."""
import json
import logging
import shutil
import subprocess

import pytest

from conftest import PRETRAIN_EXAMPLE, pretrain_overrides
from pretrain import checkpoint as ckpt
from pretrain.cli import main as cli_main
from pretrain.trainer import FINISHED, Trainer
from webtag.config import load_config
from pretrain.config import PretrainConfig

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
# 4 steps of a tiny model; checkpoints at steps 2 and 4
RUN = ["train.max_steps=4", "train.checkpoint_every=2", "train.log_every=2", "train.keep_checkpoints=3",
       "loader.batch_size=16", "loader.shuffle_buffer=8", "data.holdout_shards=0"]
STEP2, STEP4 = ckpt.checkpoint_name(2), ckpt.checkpoint_name(4)


def make_cfg(shards, mined, out, *extra):
    return load_config(PretrainConfig, PRETRAIN_EXAMPLE, pretrain_overrides(shards, mined, out, *RUN, *extra))


@pytest.fixture(scope="module")
def finished_run(shards_v1, mined_v1, tmp_path_factory):
    """One finished 4-step run with checkpoints at steps 2 and 4 (copied by each test)."""
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    out = tmp_path_factory.mktemp("ckpt") / "run"
    assert Trainer(make_cfg(shards_v1, mined_v1, out)).fit() == "finished"
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    assert [p.name for p in ckpt.list_checkpoints(out)] == [STEP2, STEP4]
    return out


def damaged_copy(run, tmp_path):
    """The run as a killed job left it (no finished.json), to resume."""
    out = tmp_path / "run"
    shutil.copytree(run, out)
    (out / FINISHED).unlink()
    return out


def resume(shards, mined, out, caplog):
    with caplog.at_level(logging.INFO, logger="pretrain.trainer"):
        trainer = Trainer(make_cfg(shards, mined, out))
        assert trainer.fit() == "finished"
    assert trainer.step == 4 and json.loads((out / FINISHED).read_text())["step"] == 4
    return trainer


def no_shard_twice(out):
    seen = {}
    for line in (out / "shards-rank0.jsonl").read_text().splitlines():
        row = json.loads(line)
        seen.setdefault(row["epoch"], []).extend(row["shards"])
    assert seen and all(len(s) == len(set(s)) for s in seen.values()), seen


# every file of a checkpoint in this format (tiny model, SGD, one process)
CHECKPOINT_FILES = ["model.safetensors", "optimizer.json", "optimizer.safetensors", "scheduler.json",
                    "rng-rank0.json", "rng-rank0.safetensors", ckpt.STATE_FILE, ckpt.MANIFEST]


def test_the_checkpoint_files_are_data_only(finished_run):
    newest = ckpt.list_checkpoints(finished_run)[-1]
    assert sorted(p.name for p in newest.iterdir()) == sorted(CHECKPOINT_FILES)
    manifest = json.loads((newest / ckpt.MANIFEST).read_text())["files"]
    assert sorted(manifest) == sorted(set(CHECKPOINT_FILES) - {ckpt.MANIFEST})
    assert all(len(v["sha256"]) == 64 and v["size"] == (newest / k).stat().st_size for k, v in manifest.items())


@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_a_truncated_file_falls_back_to_the_previous_checkpoint(shards_v1, mined_v1, finished_run, tmp_path,
                                                                caplog, name):
    out = damaged_copy(finished_run, tmp_path)
    victim = ckpt.checkpoint_root(out) / STEP4 / name
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])   # a write cut short
    resume(shards_v1, mined_v1, out, caplog)
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "damaged" in r.getMessage()]
    assert warning and STEP4 in warning[0] and name in warning[0], caplog.text
    assert f"resumed from {ckpt.checkpoint_root(out) / STEP2}" in caplog.text
    assert ckpt.damage(ckpt.checkpoint_root(out) / STEP4) == (None, set(CHECKPOINT_FILES) - {ckpt.MANIFEST})
    no_shard_twice(out)


def test_a_flipped_byte_in_the_rng_state_is_detected(shards_v1, mined_v1, finished_run, tmp_path, caplog):
    out = damaged_copy(finished_run, tmp_path)
    victim = ckpt.checkpoint_root(out) / STEP4 / "rng-rank0.safetensors"
    data = bytearray(victim.read_bytes())
    data[-7] ^= 0x10                             # same size, one bit of the torch generator's state
    victim.write_bytes(bytes(data))
    what, _ = ckpt.damage(victim.parent)
    assert what == "rng-rank0.safetensors is changed (its sha256 differs from the manifest's)"
    resume(shards_v1, mined_v1, out, caplog)
    assert f"checkpoint {victim.parent} is damaged: {what}" in caplog.text
    assert f"resumed from {ckpt.checkpoint_root(out) / STEP2}" in caplog.text


def test_missing_file_missing_manifest_and_nothing_intact(shards_v1, mined_v1, finished_run, tmp_path, capsys):
    out = damaged_copy(finished_run, tmp_path)
    step2, step4 = (ckpt.checkpoint_root(out) / s for s in (STEP2, STEP4))
    (step4 / "optimizer.safetensors").unlink()
    assert ckpt.damage(step4)[0] == "optimizer.safetensors is missing"
    (step2 / ckpt.MANIFEST).unlink()             # e.g. a checkpoint of an earlier version (pickles)
    assert ckpt.damage(step2)[0].startswith("no manifest.json")
    with pytest.raises(ckpt.CheckpointError) as exc:
        ckpt.choose_resume("auto", out)
    assert f"{STEP4}: optimizer.safetensors is missing" in str(exc.value)
    assert f"{STEP2}: no manifest.json" in str(exc.value)
    with pytest.raises(ckpt.CheckpointError, match="the checkpoint is damaged: optimizer.safetensors is missing"):
        ckpt.choose_resume(str(step4), out)      # a named checkpoint: no fallback
    assert ckpt.choose_resume("auto", tmp_path / "fresh") == (None, set())   # nothing saved yet: a fresh start
    # the command: exit 2, one line naming the damage, no traceback, nothing changed
    before = {p.name: p.read_bytes() for p in step4.iterdir()}
    capsys.readouterr()
    assert cli_main(["--config", str(PRETRAIN_EXAMPLE), *pretrain_overrides(shards_v1, mined_v1, out, *RUN)]) == 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and "no intact checkpoint" in errors[0] and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in step4.iterdir()} == before


@pytest.fixture
def tiny_disk(tmp_path):
    """A real tmpfs, mounted by the test (root) and unmounted after it."""
    mounts = []

    def mount(path, size):
        path.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {res.stderr.strip()}")
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_keeps_the_previous_checkpoint_and_stops_with_one_line(shards_v1, mined_v1, finished_run,
                                                                           tmp_path, tiny_disk, capsys):
    one = sum(f.stat().st_size for f in (ckpt.checkpoint_root(finished_run) / STEP2).iterdir())
    out = tmp_path / "full"
    root = tiny_disk(ckpt.checkpoint_root(out), one * 3 // 2 + 8192)   # the first checkpoint fits, not two
    capsys.readouterr()
    code = cli_main(["--config", str(PRETRAIN_EXAMPLE),
                     *pretrain_overrides(shards_v1, mined_v1, out, *RUN, "train.keep_checkpoints=1")])
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [ln.split(" ERROR pretrain: ", 1)[1] for ln in err.splitlines() if " ERROR " in ln]
    assert errors == [f"cannot save checkpoint to {root / STEP4}: No space left on device"], err
    assert "Traceback" not in err
    assert sorted(p.name for p in root.iterdir()) == [STEP2]        # no partial folder left
    assert ckpt.damage(root / STEP2)[0] is None                        # the previous one intact
    assert not (out / FINISHED).exists()
