import os

import pytest

from webtag.atomic import PendingFile, atomic_dir, atomic_file, remove_stale_tmp, tmp_name


def test_atomic_file_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "table.parquet"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


def test_atomic_dir_appears_complete_or_not_at_all(tmp_path):
    dest = tmp_path / "part-00000-of-00002"
    with pytest.raises(RuntimeError):
        with atomic_dir(dest) as tmp:
            (tmp / "a").write_text("1")
            raise RuntimeError("killed")
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(dest) as tmp:
        (tmp / "a").write_text("1")
    assert (dest / "a").read_text() == "1"
    with pytest.raises(FileExistsError):
        with atomic_dir(dest):
            pass


def test_stale_tmp_of_dead_writer_removed(tmp_path):
    dead = tmp_path / ".part-00000-of-00001.tmp-999999-abcd1234"
    dead.mkdir()
    alive = tmp_path / f".x.tmp-{os.getppid()}-abcd1234"
    alive.write_text("being written")
    keep = tmp_path / "part-00001-of-00002"
    keep.mkdir()
    assert remove_stale_tmp(tmp_path) == 1
    assert not dead.exists() and alive.exists() and keep.exists()


def test_pending_file_spans_calls_and_is_a_stale_tmp_until_committed(tmp_path):
    """A shard writer opens the file in one call and closes it in another."""
    done, killed = PendingFile(tmp_path / "train-0000.tar"), PendingFile(tmp_path / "train-0001.tar")
    assert done.tmp.parent == tmp_path and done.tmp.name.startswith(".train-0000.tar.tmp-")
    done.tmp.write_text("shard")
    killed.tmp.write_text("half")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []
    done.commit()
    assert (tmp_path / "train-0000.tar").read_text() == "shard" and not done.tmp.exists()
    killed.abort()
    assert [p.name for p in tmp_path.iterdir()] == ["train-0000.tar"]


def test_shared_owner_tmp_is_one_name_and_always_stale(tmp_path):
    """The ranks of a job agree on a folder's tmp name without talking; remove_stale_tmp removes
    such a folder (run it only where none is being written)."""
    a = tmp_name(tmp_path / "step-00000010", owner="ranks")
    assert a == tmp_name(tmp_path / "step-00000010", owner="ranks") == tmp_path / ".step-00000010.tmp-ranks"
    assert tmp_name(tmp_path / "x") != tmp_name(tmp_path / "x")   # per process and call by default
    a.mkdir()
    assert remove_stale_tmp(tmp_path) == 1 and not a.exists()


def test_checkpoint_tmp_folder_is_shared_ignored_by_resume_and_cleaned(tmp_path):
    from pretrain import checkpoint as ckpt
    tmp = ckpt.tmp_dir(tmp_path, 10)
    assert tmp == ckpt.tmp_dir(tmp_path, 10) and tmp.name.startswith(".")   # every rank computes the same
    killed = ckpt.tmp_dir(tmp_path, 5)              # a save killed before its rename
    legacy = ckpt.checkpoint_root(tmp_path) / ".tmp-step-00000003"   # the name of earlier versions
    for d in (tmp, killed, legacy):
        d.mkdir(parents=True)
        (d / "model.safetensors").write_text("weights")
    assert ckpt.list_checkpoints(tmp_path) == [] and ckpt.choose_resume("auto", tmp_path) == (None, set())
    final = ckpt.finish(tmp, {"step": 10}, keep=2)
    assert final == ckpt.checkpoint_root(tmp_path) / "step-00000010"
    assert ckpt.read_state(final) == {"step": 10} and (final / "model.safetensors").read_text() == "weights"
    assert [p.name for p in ckpt.checkpoint_root(tmp_path).iterdir()] == ["step-00000010"]
