"""Config and output-folder faults through the real command lines: a YAML syntax error, values a
user can get wrong (``loader.batch_size=0``, ``--max-count 0``, ...), a read-only and a full
``--out``. Each is one line naming the file or key, exit 2, no traceback, nothing half-written
and nothing that was there before lost."""
import shutil
import subprocess
import uuid

import pytest

from conftest import EXAMPLE_CONFIG, PRETRAIN_EXAMPLE, pretrain_overrides
from text_mining import schema as tm

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def _error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [l for l in err.strip().splitlines() if "ERROR" in l or l.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def _run(capsys, main, argv) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


def _pipeline(capsys, *argv):
    from pipeline.__main__ import main
    return _run(capsys, main, list(map(str, argv)))


def _text_mining(capsys, *argv):
    from text_mining.__main__ import main
    return _run(capsys, main, list(map(str, argv)))


def _pretrain(capsys, *argv):
    from pretrain.cli import main
    return _run(capsys, main, list(map(str, argv)))


def test_yaml_syntax_error_names_file_and_line(example_v1, mined_v1, shards_v1, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("loader:\n  batch_size: 16\n  workers: [1, 2\ntrain:\n  epochs: 1\n")
    for rc, err in (_pretrain(capsys, "--config", bad, *pretrain_overrides(shards_v1, mined_v1, tmp_path / "r")),
                    _pipeline(capsys, "shard", "--webvision", example_v1, "--labels", mined_v1, "--out",
                              tmp_path / "s", "--config", bad),
                    _text_mining(capsys, "run", "--webvision", example_v1, "--out", tmp_path / "m", "--config", bad)):
        line = _error_line(err)
        assert rc == 2 and f"{bad}:4:" in line and "not valid YAML" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.parametrize("override, message", [
    ("loader.batch_size=0", "loader.batch_size=0: must be >= 1"),
    ("loader.workers=-1", "loader.workers=-1: must be >= 0"),
    ("loader.crop_pct=1.5", "loader.crop_pct=1.5: must be in (0, 1]"),
    ("loader.hflip=2", "loader.hflip=2.0: must be in [0, 1]"),
    ("loader.scale=[0.9,0.1]", "loader.scale=[0.9, 0.1]: must be [low, high] with low <= high"),
    ("optim.lr=-0.1", "optim.lr=-0.1: must be > 0"),
    ("loader.prefetch_factor=0", "loader.prefetch_factor=0: must be >= 1"),
    ("loader.read_ahead=0", "loader.read_ahead=0: must be >= 1"),
    ("loader.read_ahead_mb=0", "loader.read_ahead_mb=0.0: must be > 0"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints=0: must be >= 1"),
    ("data.holdout_shards=-1", "data.holdout_shards=-1: must be >= 0"),
])
def test_training_values_are_checked_when_loaded(override, message, mined_v1, shards_v1, tmp_path, capsys):
    rc, err = _pretrain(capsys, "--config", PRETRAIN_EXAMPLE,
                        *pretrain_overrides(shards_v1, mined_v1, tmp_path / "run", override))
    assert rc == 2 and message in _error_line(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key", ["model.init_weights", "train.output_dir"])
def test_a_url_whose_backend_is_missing_is_one_line(key, mined_v1, shards_v1, tmp_path, capsys):
    """gs:// without gcsfs (not installed here): one line naming the key or URL and the extra."""
    pytest.importorskip("fsspec")
    if __import__("importlib.util").util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed")
    rc, err = _pretrain(capsys, "--config", PRETRAIN_EXAMPLE,
                        *pretrain_overrides(shards_v1, mined_v1, tmp_path / "r"), f"{key}=gs://bucket/run",
                        "train.max_steps=1")
    line = _error_line(err)
    assert rc == 2 and "gs://bucket/run" in line and "webtag[gcs]" in line, line


def test_stage_values_are_checked_when_loaded(example_v1, mined_v1, shards_v1, tmp_path, capsys):
    out = tmp_path / "s"
    rc, err = _pipeline(capsys, "shard", "--webvision", example_v1, "--labels", mined_v1, "--out", out,
                        "--max-count", 0)   # was: one sample per shard, exit 0
    assert rc == 2 and "max_count=0: must be >= 1" in _error_line(err)
    rc, err = _pipeline(capsys, "shard", "--webvision", example_v1, "--labels", mined_v1, "--out", out, "quality=0")
    assert rc == 2 and "quality=0: must be in [1, 100]" in _error_line(err)
    rc, err = _pipeline(capsys, "loader-check", "--shards", shards_v1, "--batch-size", 0)
    assert rc == 2 and "batch_size=0: must be >= 1" in _error_line(err)
    rc, err = _text_mining(capsys, "run", "--webvision", example_v1, "--out", tmp_path / "m", "--config",
                           EXAMPLE_CONFIG, "vocabulary.max_df=0")
    assert rc == 2 and "vocabulary.max_df=0.0: must be in (0, 1]" in _error_line(err)
    assert sorted(tmp_path.iterdir()) == []


def _mount(args: list[str], target) -> None:
    res = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount here (needs root in a VM or container that allows it): {res.stderr.strip()}")


@pytest.fixture
def read_only(tmp_path):
    """A folder holding a finished file, mounted read-only (a read-only bind mount: chmod does not
    stop root)."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir(), ro.mkdir()
    (src / "kept.txt").write_text("already written")
    _mount(["--bind", "-o", "ro", str(src)], ro)
    try:
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_read_only_out(example_v1, mined_v1, read_only, capsys):
    for rc, err in (_pipeline(capsys, "shard", "--webvision", example_v1, "--labels", mined_v1, "--out",
                              read_only / "shards", "--workers", 1),
                    _pipeline(capsys, "shard", "--webvision", example_v1, "--labels", mined_v1, "--out",
                              read_only, "--workers", 1),
                    _text_mining(capsys, "run", "--webvision", example_v1, "--out", read_only / "mined",
                                 "--workers", 1, "--config", EXAMPLE_CONFIG)):
        line = _error_line(err)
        assert rc == 2 and str(read_only) in line and "Read-only file system" in line, line
    assert [p.name for p in read_only.iterdir()] == ["kept.txt"]
    assert (read_only / "kept.txt").read_text() == "already written"


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: the example's validation shards fit, its training shards (2 MB) do not."""
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount(["-t", "tmpfs", "-o", "size=1m", f"webtag-{uuid.uuid4().hex[:6]}"], disk)
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_full_disk(example_v1, mined_v1, shards_v1, small_disk, capsys):
    """Sharding into a full disk: one line, exit 2; the split already finished there is untouched
    and the failed one leaves no shard, manifest or marker (and no temporary file)."""
    shutil.copytree(shards_v1 / "val", small_disk / "val")      # finished before the disk filled
    before = {p.name: p.read_bytes() for p in (small_disk / "val").rglob("*") if p.is_file()}
    rc, err = _pipeline(capsys, "shard", "--webvision", example_v1, "--labels", mined_v1, "--out", small_disk,
                        "--split", "train", "--workers", 1, "--num-parts", 1)
    line = _error_line(err)
    assert rc == 2 and str(small_disk) in line and "No space left on device" in line, line
    assert {p.name: p.read_bytes() for p in (small_disk / "val").rglob("*") if p.is_file()} == before
    left = sorted(p.name for p in (small_disk / "train").rglob("*") if p.is_file())
    assert left == [], left
    # text mining into a disk left with 64 KiB: the same; with room again, the rerun finishes
    import os
    st = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(bytes(max(0, st.f_bavail * st.f_frsize - 64 * 1024)))
    argv = ["run", "--webvision", example_v1, "--out", small_disk / "mined", "--workers", 1, "--config", EXAMPLE_CONFIG]
    rc, err = _text_mining(capsys, *argv)
    line = _error_line(err)
    assert rc == 2 and str(small_disk) in line and "No space left on device" in line, line
    assert not (small_disk / "mined" / tm.COMPLETE_FILE).exists()
    assert not [p for p in (small_disk / "mined").rglob(".*tmp-*")]   # no temporary file left behind
    (small_disk / "filler").unlink()
    rc, err = _text_mining(capsys, *argv)
    assert rc == 0, err
    assert tm.read_complete(small_disk / "mined")["fingerprint"] == tm.read_complete(mined_v1)["fingerprint"]
