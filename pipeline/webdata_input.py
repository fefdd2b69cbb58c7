"""Image bytes of web-data samples for the shard writer (text_mining/webdata.py mines their labels):
a sample's ``path`` is a file under the input folder, or ``<tar>/<member>`` inside one of
img2dataset's tar shards, read straight from the tar (bytes kept as they are; the shard writer's
checks and re-encoding apply as for files). Each process keeps the member index of the last few
tars it opened, so a part reads its (contiguous) samples with one header scan per tar; a tar at
a URL is streamed once into a temporary file first (one pass over the network, at most
:data:`_KEEP` tars on local disk per process); and the
class list of labels mined from web data (their own classes.parquet: there is no info/synsets.txt)."""
from __future__ import annotations

import collections
import os
import tarfile
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from text_mining import schema as tm_schema
from webtag.remote_copy import download
from webtag.storage import Remote

_OPEN: collections.OrderedDict = collections.OrderedDict()
_KEEP = 2


def _tar_of(path):
    """(the tar, the member's name in it) when ``path`` lies inside a ``.tar``, else None. A local
    tar must be a file; a remote one is known by its name only (no request per sample)."""
    if isinstance(path, Remote):
        scheme, rest = path.url.split("://", 1)
        parts = rest.split("/")
        for i, seg in enumerate(parts[:-1]):
            if seg.lower().endswith(".tar"):
                return Remote(f"{scheme}://{'/'.join(parts[:i + 1])}"), "/".join(parts[i + 1:])
        return None
    for parent in path.parents:
        if parent.suffix.lower() == ".tar" and parent.is_file():
            return parent, path.relative_to(parent).as_posix()
    return None


def _open_tar(tar) -> tarfile.TarFile:
    """A local tar opened in place; a remote one streamed once into a temporary file (its name
    removed at once: the open file keeps it until the tar leaves :data:`_OPEN`)."""
    if not isinstance(tar, Remote):
        return tarfile.open(tar)
    fd, spool = tempfile.mkstemp(prefix="webtag-webdata-", suffix=".tar")
    os.close(fd)
    try:
        download(str(tar), spool)
        return tarfile.open(spool)
    finally:
        os.unlink(spool)


def _index(tar):
    key = str(tar)
    if key in _OPEN:
        _OPEN.move_to_end(key)
        return _OPEN[key]
    tf = _open_tar(tar)
    entry = (tf, {m.name: m for m in tf.getmembers() if m.isfile()})
    _OPEN[key] = entry
    while len(_OPEN) > _KEEP:
        _OPEN.popitem(last=False)[1][0].close()
    return entry


def read_image(path) -> bytes:
    """The bytes at ``path`` (a Path or a webtag.storage Remote): a file, or a tar member
    (FileNotFoundError when neither exists)."""
    found = _tar_of(path) if isinstance(path, Remote) else None
    if found is None:
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            found = _tar_of(path)
            if found is None:
                raise FileNotFoundError(str(path)) from None
    tar, member = found
    try:
        tf, members = _index(tar)
    except (tarfile.TarError, OSError) as exc:
        raise FileNotFoundError(f"{tar}: unreadable tar ({exc})") from None
    if member not in members:
        raise FileNotFoundError(f"{tar} has no member {member}") from None
    return tf.extractfile(members[member]).read()


def is_webdata_labels(labels_dir: str | Path | None) -> bool:
    """Whether the text-mining folder's labels were mined from web data (not a WebVision release)."""
    if labels_dir is None:
        return False
    path = Path(labels_dir) / tm_schema.IMAGES_FILE
    if not path.is_file():
        return False
    meta = pq.read_schema(path).metadata or {}
    return meta.get(tm_schema.META_RELEASE) == b"webdata"


def webdata_classes(labels_dir: str | Path, classes=None) -> tuple[list[str], None]:
    """The wnids of web-data labels (their classes.parquet, in class id order); no subsets."""
    if classes is not None:
        raise ValueError(f"classes={classes}: class subsets apply to WebVision releases; these labels "
                         f"({labels_dir}) were mined from web data: cut the classes file and mine again")
    path = Path(labels_dir) / tm_schema.CLASSES_FILE
    return [str(w) for w in pq.read_table(path, columns=["wnid"]).column("wnid").to_pylist()], None
