"""Training images read straight from the release's tar archives (WebVision 2.0 ships them as
``webvision_train_XX.tar``), streamed once each, never extracted.

The archives sit at the top of the images root (the release root, or ``--images-root``) and hold
the list paths as members (``google/q00001/000000.jpg``; a leading ``./`` or one top folder, as
``train/google/...``, is accepted). A shard part reads whole archives: part I of N takes a
contiguous range of the sorted archive names (``webtag.parallel.part_range``) and yields every
listed image it meets, in archive order; members the lists do not name are passed over. Each part
records which rows its archives held; the merge reports the list's images that no archive holds
as ``missing_image``, like missing files (no part reads another's archives). A
truncated or corrupt archive is named in the log and the report (``bad_archive``, once per
archive); the members read before the damage are kept, the ones after it count as missing. A file
whose first block is no tar header is refused with a one-line error naming it.
"""
from __future__ import annotations

import hashlib
import logging
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from webtag.atomic import atomic_file
from webtag.parallel import part_range
from webtag.problems import Problems

log = logging.getLogger(__name__)

ARCHIVE_GLOB = "webvision_train_*.tar"
HELD = "{stem}.held.npy"           # in the split's _parts/: the rows a part's archives held
WANTED = "archive-samples.parquet"  # written by part 0: key, path, shadowed of every row
_BATCH = 256   # images whose rows are taken from the sample table at once
ARCHIVE_KINDS = {
    "bad_archive": "training archive truncated or corrupt: members before the damage kept, the rest "
                   "counted as missing (once per archive)",
}


def find_archives(images_root: str | Path) -> list[Path]:
    """The training archives under ``images_root`` (sorted; empty: the images are files). Each must
    start with a tar header (ValueError naming the first that does not)."""
    archives = sorted(Path(images_root).glob(ARCHIVE_GLOB))
    for path in archives:
        with open(path, "rb") as f:
            block = f.read(tarfile.BLOCKSIZE)
        try:
            tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
        except tarfile.HeaderError:
            raise ValueError(f"{path}: not a tar archive (its first {tarfile.BLOCKSIZE} bytes are no tar "
                             f"header); unpack or re-download it, or move it out of {images_root}") from None
    return archives


class PathIndex:
    """The sample table's list paths, looked up by name: row numbers sorted by a 64-bit hash of
    the path (blake2b), 16 bytes a row, where a ``{path: row}`` dict of Python strings takes about
    150 (some 2.4 GB per shard part for WebVision 2.0's 16M training images). A hit is checked
    against the path itself, so a hash collision cannot pair an image with another row; a path
    listed twice resolves to its last row, as the dict did."""

    def __init__(self, paths):
        self.paths = paths   # the table's path column (pyarrow)
        self.n = len(paths)
        hashes = np.empty(self.n, dtype=np.uint64)
        step = 1 << 16
        for lo in range(0, self.n, step):   # Python strings for one slice at a time
            hashes[lo:lo + step] = [_hash(p) for p in paths.slice(lo, step).to_pylist()]
        self.order = np.argsort(hashes, kind="stable")
        self.sorted = hashes[self.order]
        # rows whose path a later row lists again (looked up as that later row): not their own image
        self.shadowed = np.zeros(self.n, dtype=bool)
        same = np.flatnonzero(self.sorted[1:] == self.sorted[:-1])
        for h in np.unique(self.sorted[same]):   # equal hashes: a path listed twice (or a collision)
            group = self.order[np.searchsorted(self.sorted, h, "left"):np.searchsorted(self.sorted, h, "right")]
            last: dict[str, int] = {}
            for row in sorted(int(r) for r in group):
                name = self.paths[row].as_py()
                if name in last:
                    self.shadowed[last[name]] = True
                last[name] = row

    def row(self, name: str) -> int | None:
        h = np.uint64(_hash(name))
        lo, hi = np.searchsorted(self.sorted, h, "left"), np.searchsorted(self.sorted, h, "right")
        for i in range(hi - 1, lo - 1, -1):   # the last row of the path
            row = int(self.order[i])
            if self.paths[row].as_py() == name:
                return row
        return None


def _hash(path: str) -> int:
    return int.from_bytes(hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little")


def member_row(name: str, wanted: PathIndex) -> tuple[str, int] | None:
    """The list path a member name stands for and its row (None: not one the lists name)."""
    name = name[2:] if name.startswith("./") else name
    row = wanted.row(name)
    if row is not None:
        return name, row
    _top, _, rest = name.partition("/")
    row = wanted.row(rest)
    return (rest, row) if row is not None else None


def _stream(archive: Path, wanted: PathIndex, problems: Problems, held: np.ndarray
            ) -> Iterator[tuple[str, int, bytes]]:
    """(list path, row, bytes) of the listed members of one archive, read in one pass. The member being
    read when the archive turns out damaged is accounted for by ``bad_archive``: marked held."""
    current = None
    try:
        with tarfile.open(archive, "r|") as tf:
            for member in tf:
                current = member.name
                if not member.isfile():
                    continue
                found = member_row(member.name, wanted)
                if found is not None:
                    yield *found, tf.extractfile(member).read()
            current = None
    except (tarfile.TarError, EOFError, OSError) as exc:
        where = f"after member {current}" if current else "at its start"
        log.warning("training archive %s is damaged %s (%s): its later members are missing", archive, where, exc)
        problems.add("bad_archive", str(archive), current, f"truncated or corrupt ({exc})")
        found = member_row(current, wanted) if current else None
        if found is not None:
            held[found[1]] = True


def part_archives(archives: list[Path], part: int, num_parts: int) -> tuple[int, int]:
    """The range of ``archives`` that part ``part`` of ``num_parts`` reads."""
    return part_range(len(archives), part, num_parts)


def archive_images(samples, index: PathIndex, archives: list[Path], part: int, num_parts: int,
                   problems: Problems, held: np.ndarray) -> Iterator[tuple[dict, str, bytes]]:
    """(row, where, bytes) of the listed images of the sample table ``samples`` in this part's
    archives, in archive order; ``held`` (a bool per row) marks the rows they held. Only the
    paths' hashes are held in memory (``index``, a :class:`PathIndex` of the table's paths; rows
    are taken from the table, 256 images at a time). What no archive holds is reported by the
    merge (:func:`save_held`, :func:`report_missing`)."""
    def rows(batch: list[tuple[int, str, bytes]]):   # rows taken from the table in batches
        got = samples.take([i for i, _, _ in batch]).to_pylist() if batch else []
        yield from ((r, where, data) for r, (_, where, data) in zip(got, batch))

    lo, hi = part_archives(archives, part, num_parts)
    batch: list = []
    for archive in archives[lo:hi]:
        for path, i, data in _stream(archive, index, problems, held):
            if held[i]:   # the same image in two archives (or twice in one): the first counts
                continue
            held[i] = True
            batch.append((i, f"{archive.name}:{path}", data))
            if len(batch) >= _BATCH:
                yield from rows(batch)
                batch = []
    yield from rows(batch)


def save_held(parts_dir: Path, stem: str, held: np.ndarray, samples, index: PathIndex, on_error: str) -> None:
    """Before the part's report: the rows it held (``<stem>.held.npy``); part 0 also writes the
    table's key and path and which rows repeat a later row's path (``archive-samples.parquet``),
    so that the merge can name what no archive held without reading any archive again."""
    with atomic_file(parts_dir / HELD.format(stem=stem)) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.flatnonzero(held).astype(np.int64), allow_pickle=False)
    if stem.startswith("part-00000-"):
        table = samples.select(["key", "path"]).append_column("shadowed", pa.array(index.shadowed))
        with atomic_file(parts_dir / WANTED) as tmp:
            pq.write_table(table.replace_schema_metadata({"on_error": on_error}), tmp)


def report_missing(parts_dir: Path, stems: list[str], problems: Problems) -> None:
    """The merge: every listed image that no part's archives held, as ``missing_image`` (with
    ``on_error=fail``, the first one is an InputError naming it)."""
    wanted = parts_dir / WANTED
    if not wanted.is_file():
        return   # the images were files, not the release's archives
    pf = pq.ParquetFile(wanted)
    held = np.zeros(pf.metadata.num_rows, dtype=bool)
    for stem in stems:
        held[np.load(parts_dir / HELD.format(stem=stem), allow_pickle=False)] = True
    on_error = (pf.schema_arrow.metadata or {}).get(b"on_error", b"skip").decode()
    found = Problems(problems.kinds, problems.file_kinds, on_error=on_error)
    start = 0
    for batch in pf.iter_batches(batch_size=1 << 16):
        n = batch.num_rows
        lost = np.flatnonzero(~held[start:start + n] & ~batch.column("shadowed").to_numpy(zero_copy_only=False))
        keys, paths = batch.column("key"), batch.column("path")
        for r in lost:
            found.add("missing_image", paths[int(r)].as_py(), None, f"sample {keys[int(r)].as_py()}: not found")
        start += n
    problems.merge(found)
