"""A text-mining output at a URL: written in a local staging folder, uploaded when finished.

``python -m text_mining run --out s3://bucket/labels`` runs the whole stage into a local staging
folder (``--stage``, default :func:`stage_folder`: the same URL finds the same folder again, so a
rerun skips the parts already done) and then uploads the public outputs; ``python -m text_mining
upload LABELS URL`` uploads a finished local output (one made with the separate steps on a shared
file system: their per-part work lives in ``_work`` and is never read from a URL).

What marks a finished output is its ``complete.json`` (text_mining/schema.py), which every later
stage requires: it is removed from the destination first and uploaded last
(:func:`webtag.remote_copy.publish_tree`), and an object becomes visible only once it is whole, so an
upload cut short leaves no folder that counts as finished. ``_work`` and lock folders stay local.

:func:`local_labels` is the way back for the stages that read the tables as local files
(``pipeline shard --labels s3://...``): the finished output at a URL (its ``complete.json`` is
required) copied into ``_work/labels/<name>-<hash>``, used again while its marker is the remote's.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import shutil
from pathlib import Path

from webtag.atomic import atomic_dir
from webtag.remote_copy import download, publish_tree
from webtag.storage import Remote, StorageError, is_url, location

from . import schema

log = logging.getLogger(__name__)

STAGE_ROOT = Path("_work") / "stage"
LABELS_CACHE = Path("_work") / "labels"
WORK_FOLDER = "_work"   # text_mining/layout.py: the steps' parts, kept local


def _url_folder(root: Path, url: str, prefix: str) -> Path:
    name = url.rstrip("/").rsplit("/", 1)[-1] or "labels"
    return root / f"{prefix}{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def stage_folder(url: str, stage: str | None = None) -> Path:
    """The local folder the output for ``url`` is written to before the upload: ``stage``, or
    ``_work/stage/<name>-<hash of the URL>``."""
    return Path(stage) if stage else _url_folder(STAGE_ROOT, url, "text-mining-")


def refuse_url_step(command: str, out: str) -> None:
    """The separate steps write their parts into ``--out/_work``: a shared folder, not a URL."""
    if is_url(out):
        raise StorageError(
            f"--out {out} with `text_mining {command}`: the separate steps (count, vocabulary, tag, "
            "merge) keep their parts in the output folder, which must be on a shared file system; run "
            "them there, then `python -m text_mining upload FOLDER " + out + "` (or use `text_mining run "
            "--out " + out + "`, which stages locally and uploads)")


def publish_labels(folder: str | Path, url: str) -> int:
    """Upload the finished text-mining output ``folder`` to ``url`` (an unfinished or changed one
    is a LabelsError before anything is uploaded). Returns the files uploaded."""
    if not isinstance(location(url), Remote):
        raise StorageError(f"{url}: upload needs an object-store URL (s3://, gs://, ...)")
    schema.read_complete(folder)
    n = publish_tree(folder, url, last=(schema.COMPLETE_FILE,), skip=(WORK_FOLDER,))
    log.info("uploaded %d files of %s to %s", n, folder, url)
    return n


def local_labels(path: str | Path, root: Path = LABELS_CACHE) -> Path:
    """A local text-mining output for ``path``: a local path unchanged, a URL's finished output
    copied below ``root`` (its files, ``complete.json`` last; a LabelsError when the URL holds no
    finished one)."""
    if not is_url(path):
        return Path(path)
    remote = location(str(path))
    if not isinstance(remote, Remote):
        raise StorageError(f"{path}: a text-mining output is read from a folder or an object-store URL")
    marker_url = remote / schema.COMPLETE_FILE
    if not marker_url.is_file():
        raise schema.LabelsError(f"{path} is not a finished text-mining output: {marker_url} is missing "
                                 "(an upload cut short, or not uploaded yet)")
    marker = marker_url.read_bytes()
    dest = _url_folder(Path(root), str(path), "")
    if (dest / schema.COMPLETE_FILE).is_file() and (dest / schema.COMPLETE_FILE).read_bytes() == marker:
        return dest
    if dest.exists():   # a copy of an older upload
        shutil.rmtree(dest)
    try:
        with atomic_dir(dest) as tmp:
            for entry in remote.iterdir():
                if entry.name != schema.COMPLETE_FILE and entry.is_file():
                    download(str(entry), tmp / entry.name)   # streamed, retried
            (tmp / schema.COMPLETE_FILE).write_bytes(marker)
    except OSError as exc:   # another process (a part or rank of the same job) copied it meanwhile
        if not isinstance(exc, FileExistsError) and exc.errno != errno.ENOTEMPTY:
            raise
    schema.read_complete(dest)   # every table the marker lists, at its size
    log.info("labels %s copied to %s", path, dest)
    return dest
