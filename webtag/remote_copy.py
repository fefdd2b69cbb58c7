"""Copies between local disk and object-store URLs, for what must be a local file to be used:
a run folder kept at a URL (:mod:`pretrain.run_mirror`) and weights at a URL (``init=``,
``continue_from=``, ``model.init_weights=``, ``finetune evaluate --checkpoint``).

- :func:`download` copies one remote file through :mod:`webtag.storage`'s retrying reader
  (streamed, read-ahead, transient errors retried and counted), into a hidden name renamed when
  complete: a killed download never leaves a file under its final name.
- :func:`upload` puts one local file, retrying transient errors the same way (counted in
  ``storage.RETRIES``; after ``storage.MAX_RETRIES`` failures in a row an OSError naming the URL).
  An object store shows an object only once it is complete, so an upload is atomic by itself.
- :func:`publish_tree` uploads a folder written locally (the shard writer's and text mining's
  output): the completion markers (the files named by ``last``, e.g. each split's ``sizes.json``)
  are removed first and uploaded last, so a reader never finds a finished split whose files are
  not all there.
- :func:`local_model` gives what the model loaders open: a local path unchanged; a URL of a file:
  that file; a URL of a folder: the files of ``names`` found there. Copies are cached in
  ``$WEBTAG_CACHE_DIR`` (default ``~/.cache/webtag/remote``), one folder per URL, and used again
  only while every file's size and ETag (or modification time) are the remote's. The processes of
  a node share one copy: the first downloads under a lock, the others wait for it.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path, PurePosixPath

from .storage import Remote, StorageError, is_url, location, retry_call

CACHE_ENV = "WEBTAG_CACHE_DIR"
SOURCE_FILE = ".source.json"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "webtag" / "remote")


def download(url: str, dest: str | Path) -> Path:
    """Copy the remote file ``url`` to ``dest`` (complete, or not there at all)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    try:
        with location(url).open("rb") as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 8 << 20)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def upload(local: str | Path, url: str) -> None:
    """Put the local file ``local`` at ``url``."""
    remote = Remote(url)
    retry_call(f"upload {local} -> {url}", lambda: remote.fs.put_file(str(local), remote.rpath))


def remove(url: str, recursive: bool = False) -> None:
    remote = Remote(url)
    try:
        retry_call(f"delete {url}", lambda: remote.fs.rm(remote.rpath, recursive=recursive))
    except FileNotFoundError:
        pass


def _version(info: dict) -> str:
    """What changes when the object changes: its size and ETag (S3, GCS) or modification time."""
    tag = next((info[k] for k in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified")
                if info.get(k) is not None), "")
    return f"{info.get('size')}:{tag}"


def local_model(path: str | Path, names: tuple[str, ...]) -> Path:
    """A local file or folder to load weights from (see the module's docstring). ``names``: the
    files a folder may hold that the loader reads (those missing remotely are skipped)."""
    if not is_url(path):
        return Path(path)
    loc = location(path)
    if not isinstance(loc, Remote):
        raise StorageError(f"{path}: weights are read from a local path or an object-store URL, not a pipe:")
    fs, root = loc.fs, loc.rpath
    try:
        info = retry_call(str(loc), lambda: fs.info(root))
    except FileNotFoundError:
        raise FileNotFoundError(f"{loc} does not exist") from None
    if info.get("type") == "directory":
        listing = {Path(p["name"]).name: p for p in retry_call(str(loc), lambda: fs.ls(root, detail=True))
                   if p.get("type") == "file"}
        files = {n: listing[n] for n in names if n in listing}
        if not files:
            raise FileNotFoundError(f"{loc} holds none of {', '.join(names)}")
        folder = _fetch(loc, {n: (f"{loc}/{n}", i) for n, i in files.items()})
        return folder
    name = loc.name
    return _fetch(loc, {name: (str(loc), info)}) / name


def _fetch(loc: Remote, files: dict[str, tuple[str, dict]]) -> Path:
    """Download ``files`` (name -> (url, info)) into the URL's cache folder unless there already."""
    folder = cache_root() / hashlib.sha256(str(loc).encode()).hexdigest()[:20]
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {n: _version(i) for n, (_, i) in files.items()}
    with open(folder / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # the other processes of the node wait for this copy
        source = folder / SOURCE_FILE
        try:
            have = json.loads(source.read_text(encoding="utf-8")) if source.is_file() else {}
        except ValueError:
            have = {}
        if have.get("url") == str(loc) and have.get("files") == wanted and all((folder / n).is_file() for n in wanted):
            return folder
        source.unlink(missing_ok=True)
        for name, (url, _) in files.items():
            download(url, folder / name)
        source.write_text(json.dumps({"url": str(loc), "files": wanted}), encoding="utf-8")
    return folder


def publish_tree(local: str | Path, url: str, last: tuple[str, ...] = (), skip: tuple[str, ...] = ("_parts",)
                 ) -> int:
    """Upload every file below ``local`` to ``url`` (same relative paths); the files named in
    ``last`` (completion markers, by base name) are deleted remotely first and uploaded after all
    others. Folders named in ``skip`` (the shard writer's per-part work) and hidden ones (locks)
    stay local. Returns the number of files uploaded."""
    local = Path(local)
    dest = location(url)
    if not isinstance(dest, Remote):
        raise StorageError(f"{url}: not an object-store URL to upload to")
    root = dest.url
    files = sorted(p for p in local.rglob("*") if p.is_file() and not any(
        part in skip or part.startswith(".") for part in p.relative_to(local).parts[:-1]))
    rel = [p.relative_to(local).as_posix() for p in files]
    markers = [(p, r) for p, r in zip(files, rel) if PurePosixPath(r).name in last]
    for _, r in markers:
        remove(f"{root}/{r}")
    for p, r in zip(files, rel):   # each upload retried on transient errors
        if PurePosixPath(r).name not in last:
            upload(p, f"{root}/{r}")
    for p, r in markers:
        upload(p, f"{root}/{r}")
    return len(files)
