"""Atomic output: a file or folder appears under its final name complete, or not at all.

Work is written under a hidden temporary name in the same folder (``tmp_name``), then fsynced and
renamed (``publish``). A killed process leaves only a hidden ``.<name>.tmp-<owner>`` entry, which
the next run removes (``remove_stale_tmp``); nothing already written is touched.

- ``atomic_file`` / ``atomic_dir``: a context manager around one write;
- ``PendingFile``: the same for a file whose writing spans calls (opened in one, closed in another);
- ``tmp_name`` with a shared ``owner`` + ``publish``: a folder filled by several processes (the
  ranks of one job), published by one of them.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

_TMP = ".tmp-"


def tmp_name(final: str | Path, owner: str | None = None) -> Path:
    """The hidden temporary name of ``final`` in its folder: ``.<name>.tmp-<owner>``.

    ``owner`` defaults to this process (its pid and a random suffix): ``remove_stale_tmp`` leaves
    such an entry alone while its process runs on this host. A name that several processes must
    agree on (e.g. every rank of a job writing into one folder) passes a fixed ``owner`` that is
    not a pid; ``remove_stale_tmp`` removes it whenever it runs, so run that only where no such
    writer can still be at work."""
    final = Path(final)
    if owner is None:
        owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return final.with_name(f".{final.name}{_TMP}{owner}")


def publish(tmp: str | Path, final: str | Path) -> None:
    """Make the finished ``tmp`` (a file, or a folder: its files) durable, then rename it to
    ``final``. A file replaces an existing ``final``; a folder needs ``final`` absent (or empty)."""
    tmp, final = Path(tmp), Path(final)
    for f in (tmp.iterdir() if tmp.is_dir() else [tmp]):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    if tmp.is_dir():
        os.rename(tmp, final)
    else:
        os.replace(tmp, final)


class PendingFile:
    """A file being written under its temporary name ``tmp``: ``commit()`` publishes it under
    ``path``, ``abort()`` removes it. For writers that open and close the file in different calls
    (a shard writer rolling over shards); otherwise use ``atomic_file``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp_name(self.path)

    def commit(self) -> None:
        publish(self.tmp, self.path)

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to ``path``."""
    pending = PendingFile(path)
    try:
        yield pending.tmp
        pending.commit()
    finally:
        pending.abort()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it is renamed to ``path``.

    ``path`` must not exist yet (a finished part is never overwritten)."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        raise FileExistsError(f"{final} already exists")
    tmp = tmp_name(final)
    tmp.mkdir()
    try:
        yield tmp
        publish(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_stale_tmp(folder: str | Path) -> int:
    """Remove leftovers of killed writers (hidden ``.*.tmp-*`` entries) in ``folder``: those of
    processes that no longer run on this host, and those with a shared owner (``tmp_name``)."""
    folder = Path(folder)
    removed = 0
    if not folder.is_dir():
        return 0
    for entry in folder.iterdir():
        if entry.name.startswith(".") and _TMP in entry.name:
            pid = entry.name.rsplit(_TMP, 1)[1].split("-", 1)[0]
            if pid.isdigit() and pid_alive(int(pid)) and int(pid) != os.getpid():
                continue  # a writer that is still running on this host
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process of this pid exists on this host (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
