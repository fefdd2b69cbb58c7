"""Where data lives: local paths, fsspec URLs (``s3://``, ``gs://``, ...) and webdataset-style
``pipe:`` commands, behind one small location type that the readers use like a :class:`Path`.

- :func:`location` turns what a user wrote into a location: a :class:`Path` for a local path (the
  code paths of local data are unchanged), a :class:`Remote` for a URL with a scheme, a
  :class:`Pipe` for ``pipe:COMMAND``. Both of the latter support ``/``, ``name``, ``parent``,
  ``is_file()``, ``open("rb")``, ``read_text()`` and ``str()`` as a Path does.
- ``pipe:`` locations are templates: ``pipe:cat /data/shards/{}`` or
  ``pipe:aws s3 cp s3://bucket/shards/{} -``; the ``{}`` is replaced by the path of the file wanted
  below the location (``train/sizes.json``, ``train/shard-000000.tar``). The command's output is
  spooled to a temporary file (a shard is read with seeks when it is damaged), so one shard per
  reader is on local disk at a time; a command that fails is an OSError naming it and its exit
  status.
- Remote files are read through fsspec with a read-ahead cache (:data:`READ_AHEAD` bytes) and
  retried on transient errors (5xx, 408, 429, a dropped connection; not a missing file or a
  refusal): the file is opened again at the position reached. Retries are counted
  (:data:`RETRIES`); after :data:`MAX_RETRIES` in a row on one file the error is an OSError
  naming the URL.
- :func:`webtag.remote_copy.publish_tree` uploads a folder written locally (the shard writer's output) to a URL:
  object stores make a single object visible only when it is complete, and the completion markers
  (the files named by ``last``, e.g. each split's ``sizes.json``) are removed first and uploaded
  last, so a reader never finds a finished split whose files are not all there.
- Credentials and endpoints come from where the backend looks itself (for S3: the ``AWS_*``
  environment variables, ``~/.aws`` profiles, instance roles; ``AWS_ENDPOINT_URL`` for an
  S3-compatible server); webtag never logs or stores them.

A URL whose backend is not installed is a :class:`StorageError` naming the extra to install
(``pip install 'webtag[s3]'``, ``'webtag[gcs]'``).
"""
from __future__ import annotations

import io
import os
import posixpath
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READ_AHEAD = 8 << 20          # bytes fetched per remote request (fsspec's readahead cache)
MAX_RETRIES = int(os.environ.get("WEBTAG_STORAGE_RETRIES", "5"))   # transient errors in a row, per file
RETRY_WAIT = 0.5              # seconds before the first retry, doubled each time
RETRIES = 0                   # transient remote read errors retried in this process

EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
_SAFE_NAME = re.compile(r"[A-Za-z0-9._/-]+")


class StorageError(ValueError):
    """A location that cannot be used as given (bad URL, missing backend, bad pipe template)."""


def is_url(path) -> bool:
    """A fsspec URL (``scheme://``, not ``file://``) or a ``pipe:`` command."""
    s = str(path) if isinstance(path, (str, Remote, Pipe)) else ""
    return s.startswith("pipe:") or (re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", s) is not None
                                     and not s.startswith("file://"))


def location(path):
    """A :class:`Path` for a local path (``file://`` stripped), else a :class:`Remote` or :class:`Pipe`."""
    if isinstance(path, (Path, Remote, Pipe)):
        return path
    s = os.fspath(path)
    if s.startswith("pipe:"):
        return Pipe(s[5:].strip())
    if is_url(s):
        return Remote(s)
    if s.startswith("file://"):
        s = s[7:]
    return Path(s)


def filesystem(url: str):
    """(fsspec filesystem, path within it) for ``url``; StorageError naming the extra to install."""
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec comes with the optional extras
        raise StorageError(f"{url}: reading URLs needs fsspec: pip install 'webtag[s3]' (or [gcs])") from None
    scheme = url.split("://", 1)[0].lower()
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        extra = EXTRAS.get(scheme)
        hint = f"pip install 'webtag[{extra}]'" if extra else f"install the fsspec backend for {scheme}:// ({exc})"
        raise StorageError(f"{url}: {scheme}:// needs a package that is not installed: {hint}") from None
    except ValueError as exc:
        raise StorageError(f"{url}: {exc}") from None


def _connection_error(exc: BaseException | None) -> bool:
    aiohttp = sys.modules.get("aiohttp")
    return isinstance(exc, (ConnectionError, TimeoutError)) or (
        aiohttp is not None and isinstance(exc, aiohttp.ClientError))


def _transient(exc: BaseException) -> bool:
    """Worth retrying: an HTTP status of 5xx, 408 or 429, a dropped connection, anything but a
    missing file or a refusal. fsspec's http:// reports any failure to learn a file's size (a 503,
    a connection cut) as FileNotFoundError raised from it: that one is judged by its cause."""
    cause = exc.__cause__ if isinstance(exc, FileNotFoundError) else None
    if cause is not None and (isinstance(getattr(cause, "status", None), int) or _connection_error(cause)):
        exc = cause
    status = getattr(exc, "status", None)     # aiohttp's ClientResponseError (fsspec http://)
    if isinstance(status, int) and 400 <= status < 600:
        return status >= 500 or status in (408, 429)
    return not isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError))


def retry_call(what, fn, on_retry=None):
    """``fn()`` retried on transient errors, :data:`RETRY_WAIT` apart then doubling, counted in
    :data:`RETRIES` (``on_retry()`` after each failure: drop a broken handle); after
    :data:`MAX_RETRIES` failures in a row an OSError naming ``what`` (a string, or a function
    giving one: where a read had got to)."""
    global RETRIES
    failures, wait = 0, RETRY_WAIT
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - backends raise their own error types
            if not _transient(exc):
                raise
            failures += 1
            if failures > MAX_RETRIES:
                cause = exc.__cause__ if isinstance(exc, FileNotFoundError) else None   # http:// size
                why = f"{exc} ({type(cause).__name__}: {cause})" if cause is not None else exc
                raise OSError(f"{what() if callable(what) else what}: failed {failures} times in a row "
                              f"({MAX_RETRIES} retries, WEBTAG_STORAGE_RETRIES), giving up: "
                              f"{type(exc).__name__}: {why}") from None
            RETRIES += 1
            time.sleep(wait)
            wait *= 2
            if on_retry is not None:
                on_retry()


class RetryingFile(io.RawIOBase):
    """A seekable binary reader over a remote file that re-opens it at the position reached when a
    read fails with a transient error (counted in :data:`RETRIES`), fatal after :data:`MAX_RETRIES`
    failures in a row with the URL named."""

    def __init__(self, url: str, fs, path: str):
        self.url, self.fs, self.rpath = url, fs, path
        self.pos, self.fh = 0, None
        self.size = self._call(lambda: self.fh.size)

    def _drop(self) -> None:
        fh, self.fh = self.fh, None
        if fh is not None:
            try:
                fh.close()
            except Exception:  # noqa: BLE001 - a broken connection: a new handle replaces it
                pass

    def _open(self):
        self._drop()
        self.fh = self.fs.open(self.rpath, "rb", block_size=READ_AHEAD, cache_type="readahead")
        if self.pos:
            self.fh.seek(self.pos)
        return self.fh

    def _call(self, fn):
        """``fn()`` with the file open; a transient failure of it or of the (re-)open is one retry,
        after which the file is opened again at ``self.pos`` by the next attempt."""
        def attempt():
            if self.fh is None:
                self._open()
            return fn()
        return retry_call(lambda: f"{self.url}: read at byte {self.pos}", attempt, on_retry=self._drop)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n is None or n < 0 else min(n, max(0, self.size - self.pos))

        def once():
            return self.fh.read(n)
        data = self._call(once) if n else b""
        self.pos += len(data)
        return data

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        self._call(lambda: self.fh.seek(self.pos))
        return self.pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        if self.fh is not None:
            try:
                self.fh.close()
            finally:
                self.fh = None
        super().close()


class Remote:
    """A file or folder at a fsspec URL, used like a Path (``/``, ``is_file``, ``open``, ...)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/") if not url.endswith("://") else url
        self._fs, self._pid = None, None

    @property
    def fs(self):
        if self._fs is None or self._pid != os.getpid():   # a forked loader worker makes its own
            self._fs, self._path = filesystem(self.url)
            self._pid = os.getpid()
        return self._fs

    @property
    def rpath(self) -> str:
        self.fs
        return self._path

    def __truediv__(self, name) -> "Remote":
        return Remote(self.url + "/" + str(name).strip("/"))

    def __str__(self) -> str:
        return self.url

    __fspath__ = None   # not a local path: os.fspath / open() refuse it instead of misreading it

    def __repr__(self) -> str:
        return f"Remote({self.url!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Remote) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def name(self) -> str:
        return posixpath.basename(self.url)

    @property
    def parent(self) -> "Remote":
        scheme, rest = self.url.split("://", 1)
        return Remote(f"{scheme}://{posixpath.dirname(rest) or rest}")

    def _type(self) -> str | None:
        """"file", "directory" or None (not there); retried: fsspec's isfile/isdir say False on
        any error, a 503 included, which would make a finished split look unfinished."""
        fs, path = self.fs, self.rpath   # a missing backend: a StorageError, not retried
        try:
            return retry_call(self.url, lambda: fs.info(path)).get("type")
        except FileNotFoundError:
            return None

    def is_file(self) -> bool:
        return self._type() == "file"

    def is_dir(self) -> bool:
        return self._type() == "directory"

    def iterdir(self):
        return [Remote(self.url + "/" + posixpath.basename(p.rstrip("/"))) for p in self.fs.ls(self.rpath, detail=False)]

    def open(self, mode: str = "rb", encoding: str | None = None):
        if mode not in ("r", "rb"):
            raise StorageError(f"{self.url}: opened for {mode!r}; remote locations are read here "
                               "(written with publish_tree)")
        try:
            fh = RetryingFile(self.url, self.fs, self.rpath)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url} does not exist") from None
        reader = io.BufferedReader(fh, buffer_size=1 << 20)
        return reader if mode == "rb" else io.TextIOWrapper(reader, encoding=encoding or "utf-8")

    def read_bytes(self) -> bytes:
        with self.open("rb") as fh:
            return fh.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)


class Pipe:
    """``pipe:COMMAND`` with ``{}`` where the path below the location goes (see the module doc)."""

    def __init__(self, template: str, rel: str = ""):
        if "{}" not in template:
            raise StorageError(f"pipe:{template}: a pipe: location needs {{}} where the file name goes, "
                               "e.g. pipe:cat /data/shards/{} or pipe:aws s3 cp s3://bucket/shards/{} -")
        self.template, self.rel = template, rel.strip("/")

    def __truediv__(self, name) -> "Pipe":
        name = str(name).strip("/")
        if not _SAFE_NAME.fullmatch(name) or ".." in name.split("/"):
            raise StorageError(f"pipe:{self.template}: {name!r} is not a plain file name")
        return Pipe(self.template, f"{self.rel}/{name}" if self.rel else name)

    def command(self) -> str:
        return self.template.replace("{}", self.rel)

    def __str__(self) -> str:
        return "pipe:" + self.command()

    __fspath__ = None

    def __repr__(self) -> str:
        return f"Pipe({self.template!r}, {self.rel!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Pipe) and (other.template, other.rel) == (self.template, self.rel)

    def __hash__(self) -> int:
        return hash((self.template, self.rel))

    @property
    def name(self) -> str:
        return posixpath.basename(self.rel)

    @property
    def parent(self) -> "Pipe":
        return Pipe(self.template, posixpath.dirname(self.rel))

    def _run(self, out):
        proc = subprocess.run(self.command(), shell=True, stdout=out, stderr=subprocess.PIPE)
        if proc.returncode:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise FileNotFoundError(f"{self}: exit status {proc.returncode}" + (f": {err[-1][:200]}" if err else ""))

    def is_dir(self) -> bool:
        return False

    def is_file(self) -> bool:
        try:
            self._run(subprocess.DEVNULL)
        except FileNotFoundError:
            return False
        return True

    def open(self, mode: str = "rb", encoding: str | None = None):
        if mode not in ("r", "rb"):
            raise StorageError(f"{self}: pipe: locations are read only")
        spool = tempfile.TemporaryFile(prefix="webtag-pipe-")
        try:
            self._run(spool)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool if mode == "rb" else io.TextIOWrapper(spool, encoding=encoding or "utf-8")

    def read_bytes(self) -> bytes:
        with self.open("rb") as fh:
            return fh.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)


def parquet_source(loc):
    """What ``pyarrow.parquet.read_table`` / ``read_metadata`` take for ``loc``: the local path, or
    the remote file's bytes in memory (manifests and label tables are read whole)."""
    loc = location(loc)
    if isinstance(loc, Path):
        return loc
    return io.BytesIO(loc.read_bytes())


def open_binary(loc):
    """A binary reader of ``loc`` and its size in bytes (local: a buffered file)."""
    loc = location(loc)
    if isinstance(loc, Path):
        fh = open(loc, "rb", buffering=1 << 20)
        return fh, os.fstat(fh.fileno()).st_size
    fh = loc.open("rb")
    raw = fh.raw if isinstance(fh, io.BufferedReader) else fh
    if isinstance(raw, RetryingFile):
        return fh, raw.size
    fh.seek(0, 2)
    size = fh.tell()
    fh.seek(0)
    return fh, size
