"""The run lock: one run at a time writes into an output folder (or into one part of a map step).

A run takes ``fcntl.flock`` on a lock file in ``OUT/.webtag-locks/`` and holds it until it ends.
The kernel releases a flock when the last process holding the open file is gone, so a killed run
never leaves a stale lock: no pid files to clean up. The file records who holds it (pid, host,
since when, what) for the refusal a second run gets, one line and exit 2::

    error: OUT is in use by pid 4242 on node17 (since 2025-01-31 10:02:11: text_mining run)

Which lock a command takes (:func:`run_lock`):

- a whole run or a reduce step (``text_mining run``, ``vocabulary``, ``merge``; ``pipeline shard``
  without ``--part``, ``shard-merge``): the folder lock, exclusive;
- one part of a map step (``text_mining count/tag --part I``, ``pipeline shard --part I``): the
  folder lock shared, and the part's own lock exclusive. The parts of a Slurm array run at the
  same time on different nodes into one OUT and do not lock each other out; the same part twice,
  or a part beside a whole run or a reduce step, is refused.

Processes forked by the holder (its pool workers) hold the lock with it, so a rerun is refused
until they are gone too, however the holder died; they die with it (``webtag.parallel``). A
holder on this host that is gone but whose lock is still held (its workers are being killed)
is waited for, up to ``wait_s``: a rerun right after a kill goes ahead once they are.

On a shared file system ``flock`` spans nodes where the file system supports it (NFS: mapped to
POSIX locks; Lustre: mounted with ``-o flock``). Where it does not (ENOLCK, EOPNOTSUPP, ENOSYS),
the run goes on without the lock and logs a warning saying so.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

from webtag.atomic import pid_alive

log = logging.getLogger(__name__)

LOCK_DIR = ".webtag-locks"
FOLDER_LOCK = "folder.lock"
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class LockHeld(RuntimeError):
    """Another run holds the lock of the output folder (or of the part)."""


class _Flock:
    """One lock file: ``flock`` on an open file descriptor, exclusive or shared."""

    def __init__(self, path: Path, shared: bool):
        self.path, self.shared = path, shared
        self.fd: int | None = None

    def try_lock(self) -> bool:
        """True: locked (or locking unsupported here, warned); False: held by another run."""
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            return False
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                self.close()
                raise
            log.warning("%s: this file system does not support flock (%s): running without the run lock, "
                        "so nothing stops a second run into the same folder", self.path, exc.strerror)
        return True

    def record(self, holder: dict) -> None:
        """Write who holds the (exclusive) lock into its file."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, (json.dumps(holder) + "\n").encode(), 0)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)   # releases the flock (workers forked meanwhile keep it until they exit)
            self.fd = None


def _holder(path: Path) -> dict | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def _is_locked(path: Path) -> bool:
    """A lock file that someone holds (a probe: a shared lock taken and let go at once)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


class RunLock:
    """The lock of a run into ``folder``: see the module docstring. ``part``: the name of the map
    part this run writes (e.g. ``count-part-00000-of-00004``); None: the whole folder."""

    def __init__(self, folder: str | Path, command: str, part: str | None = None, wait_s: float = 10.0,
                 create: bool = True):
        self.folder, self.command, self.part, self.wait_s = Path(folder), command, part, wait_s
        self.create = create   # False (a step that reads what is there): no folder, nothing to lock
        self.dir = self.folder / LOCK_DIR
        self.locks: list[_Flock] = []

    def _wanted(self) -> list[_Flock]:
        if self.part is None:
            return [_Flock(self.dir / FOLDER_LOCK, shared=False)]
        return [_Flock(self.dir / FOLDER_LOCK, shared=True), _Flock(self.dir / f"{self.part}.lock", shared=False)]

    def _who(self, failed: _Flock) -> dict | None:
        """Who holds what refused ``failed``: the part's holder, the folder's exclusive holder,
        or (an exclusive request against shared holders) a part holder."""
        if failed.path.name != FOLDER_LOCK or failed.shared:
            return _holder(failed.path)
        for path in sorted(self.dir.glob("*.lock")):
            if path.name != FOLDER_LOCK and _is_locked(path):
                return _holder(path)
        return _holder(failed.path)

    def acquire(self) -> "RunLock":
        if not self.create and not self.folder.is_dir():
            return self   # the command reports the missing folder; no trace of the lock either
        self.dir.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.now().isoformat(sep=" ", timespec="seconds"), "command": self.command,
              **({"part": self.part} if self.part else {})}
        deadline = time.monotonic() + self.wait_s
        while True:
            refused = None
            for lock in self._wanted():
                if not lock.try_lock():
                    refused = lock
                    break
                self.locks.append(lock)
            if refused is None:
                break
            self.release()
            holder = self._who(refused)
            gone = (holder is not None and holder.get("host") == me["host"]
                    and not pid_alive(int(holder.get("pid", 0))))
            if (holder is None or gone) and time.monotonic() < deadline:
                time.sleep(0.05)   # a holder being killed, its workers with it; or one still writing its name
                continue
            raise LockHeld(self._message(holder, gone))
        for lock in self.locks:
            if not lock.shared:
                lock.record(me)
        return self

    def _message(self, holder: dict | None, gone: bool) -> str:
        what = f"{self.folder}" + (f" ({self.part})" if self.part else "")
        if holder is None:
            return f"{what} is in use by another run (its lock files: {self.dir})"
        text = (f"{what} is in use by pid {holder.get('pid')} on {holder.get('host')} "
                f"(since {holder.get('since')}: {holder.get('command')}"
                + (f" {holder['part']}" if holder.get("part") else "") + ")")
        if gone:
            text += (f"; that process is gone but processes it started still hold the lock after "
                     f"{self.wait_s:.0f}s: end them, then rerun")
        return text

    def release(self) -> None:
        for lock in reversed(self.locks):
            lock.close()
        self.locks = []

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def run_lock(folder: str | Path, command: str, part: str | None = None, create: bool = True) -> Iterator[RunLock]:
    """``with run_lock(OUT, "text_mining run"):`` the run, refused with :class:`LockHeld` while
    another run holds the folder (or, with ``part``, that part or the whole folder). ``create=False``
    for steps that only add to an existing folder: a missing one is left to the step to report."""
    with RunLock(folder, command, part, create=create) as lock:
        yield lock


def part_name(step: str, part: int, num_parts: int) -> str:
    """The lock name of one part of a map step: ``count-part-00000-of-00004``."""
    return f"{step}-part-{part:05d}-of-{num_parts:05d}"
