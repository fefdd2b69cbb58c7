"""Shards to object storage: a shards root written locally (a staging folder), then uploaded.

``python -m pipeline shard --out s3://bucket/shards`` writes the shards into a local staging
folder (``--stage``, default :func:`stage_folder`) exactly as for a local ``--out`` and uploads
them when the run is finished; ``python -m pipeline upload SHARDS URL`` uploads a finished local
shards root (e.g. one made with ``--part`` / ``shard-merge`` on a shared file system).

What a reader takes for a finished split is its ``sizes.json`` (:func:`.schema.split_folder`),
and the timm index ``_info.json`` of the root lists the finished splits: both are removed from
the destination first and uploaded last (:func:`webtag.storage.publish_tree`), and every other
object becomes visible only once it is complete (a single-object PUT or a completed multipart
upload), so an upload cut short leaves no split that counts as finished with files missing or
from another run. The per-part work folders (``_parts``) and lock folders stay local.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from webtag.remote_copy import publish_tree
from webtag.storage import Remote, StorageError, location

from . import schema
from .timm_info import INFO_FILE

log = logging.getLogger(__name__)

STAGE_ROOT = Path("_work") / "stage"
MARKERS = (schema.SIZES_FILE, INFO_FILE)


def stage_folder(url: str, stage: str | None = None) -> Path:
    """The local folder the shards for ``url`` are written to before the upload: ``stage``, or
    ``_work/stage/<name>-<hash of the URL>`` (the same URL finds the same folder again)."""
    if stage:
        return Path(stage)
    name = url.rstrip("/").rsplit("/", 1)[-1] or "shards"
    return STAGE_ROOT / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def publish_shards(root: str | Path, url: str) -> int:
    """Upload the finished splits of the local shards root ``root`` to ``url``; a split that is
    not finished (no sizes.json) is a ValueError before anything is uploaded. Returns the files
    uploaded."""
    root = Path(root)
    if not isinstance(location(url), Remote):
        raise StorageError(f"{url}: upload needs an object-store URL (s3://, gs://, ...)")
    splits = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith((".", "_"))] \
        if root.is_dir() else []
    if not splits:
        raise ValueError(f"{root}: no shard splits to upload (the folder written by `python -m pipeline shard --out`)")
    unfinished = [p.name for p in splits if not (p / schema.SIZES_FILE).is_file()]
    if unfinished:
        raise ValueError(f"{root}: split(s) {', '.join(unfinished)} not finished (no {schema.SIZES_FILE}): "
                         "run python -m pipeline shard-merge first")
    n = publish_tree(root, url, last=MARKERS)
    log.info("uploaded %d files of %s to %s", n, root, url)
    return n
