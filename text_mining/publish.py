"""A text-mining output at a URL: written in a local staging folder, uploaded when finished.

``python -m text_mining run --out s3://bucket/labels`` runs the whole stage into a local staging
folder (``--stage``, default :func:`stage_folder`: the same URL finds the same folder again, so a
rerun skips the parts already done) and then uploads the public outputs; ``python -m text_mining
upload LABELS URL`` uploads a finished local output (one made with the separate steps on a shared
file system: their per-part work lives in ``_work`` and is never read from a URL).

What marks a finished output is its ``complete.json`` (text_mining/schema.py), which every later
stage requires: it is removed from the destination first and uploaded last
(:func:`webtag.storage.publish_tree`), and an object becomes visible only once it is whole, so an
upload cut short leaves no folder that counts as finished. ``_work`` and lock folders stay local.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from webtag.storage import Remote, StorageError, is_url, location, publish_tree

from . import schema

log = logging.getLogger(__name__)

STAGE_ROOT = Path("_work") / "stage"
WORK_FOLDER = "_work"   # text_mining/layout.py: the steps' parts, kept local


def stage_folder(url: str, stage: str | None = None) -> Path:
    """The local folder the output for ``url`` is written to before the upload: ``stage``, or
    ``_work/stage/<name>-<hash of the URL>``."""
    if stage:
        return Path(stage)
    name = url.rstrip("/").rsplit("/", 1)[-1] or "labels"
    return STAGE_ROOT / f"text-mining-{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


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
