import os

import pytest

from webtag.atomic import atomic_dir, atomic_file, remove_stale_tmp


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
