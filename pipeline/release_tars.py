"""Training images read straight from the release's tar archives (WebVision 2.0 ships them as
``webvision_train_XX.tar``), streamed once each, never extracted.

The archives sit at the top of the images root (the release root, or ``--images-root``) and hold
the list paths as members (``google/q00001/000000.jpg``; a leading ``./`` or one top folder, as
``train/google/...``, is accepted). A shard part reads whole archives: part I of N takes a
contiguous range of the sorted archive names (``webtag.parallel.part_range``) and yields every
listed image it meets, in archive order; members the lists do not name are passed over. Part 0
also lists the headers of the other archives (a seek past each member's data, no data read) and
reports the list's images that no archive holds as ``missing_image``, like missing files. A
truncated or corrupt archive is named in the log and the report (``bad_archive``, once per
archive); the members read before the damage are kept, the ones after it count as missing. A file
whose first block is no tar header is refused with a one-line error naming it.
"""
from __future__ import annotations

import logging
import tarfile
from pathlib import Path
from typing import Iterator

from webtag.parallel import part_range
from webtag.problems import Problems

log = logging.getLogger(__name__)

ARCHIVE_GLOB = "webvision_train_*.tar"
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


def member_path(name: str, wanted: dict) -> str | None:
    """The list path a member name stands for (None: not one the lists name)."""
    name = name[2:] if name.startswith("./") else name
    if name in wanted:
        return name
    _top, _, rest = name.partition("/")
    return rest if rest in wanted else None


def _stream(archive: Path, wanted: dict, problems: Problems) -> Iterator[tuple[str, bytes]]:
    """(list path, bytes) of the listed members of one archive, read in one pass."""
    current = None
    try:
        with tarfile.open(archive, "r|") as tf:
            for member in tf:
                current = member.name
                if not member.isfile():
                    continue
                path = member_path(member.name, wanted)
                if path is not None:
                    data = tf.extractfile(member).read()
                    yield path, data
            current = None
    except (tarfile.TarError, EOFError, OSError) as exc:
        where = f"after member {current}" if current else "at its start"
        log.warning("training archive %s is damaged %s (%s): its later members are missing", archive, where, exc)
        problems.add("bad_archive", str(archive), current, f"truncated or corrupt ({exc})")


def _listed(archive: Path, wanted: dict) -> set[str]:
    """The list paths an archive holds, from its headers only (what precedes any damage)."""
    held = set()
    try:
        with tarfile.open(archive, "r:") as tf:
            for member in tf:
                if member.isfile() and (path := member_path(member.name, wanted)) is not None:
                    held.add(path)
    except (tarfile.TarError, EOFError, OSError):
        pass   # its own part names it (bad_archive)
    return held


def part_archives(archives: list[Path], part: int, num_parts: int) -> tuple[int, int]:
    """The range of ``archives`` that part ``part`` of ``num_parts`` reads."""
    return part_range(len(archives), part, num_parts)


def archive_images(samples, archives: list[Path], part: int, num_parts: int,
                   problems: Problems) -> Iterator[tuple[dict, str, bytes | None]]:
    """(row, where, bytes) of the listed images of the sample table ``samples`` in this part's
    archives, in archive order; then, in part 0, (row, where, None) for every row that no archive
    holds. Only the paths are held in memory (rows are taken from the table, 256 images at a time)."""
    wanted = {path: i for i, path in enumerate(samples.column("path").to_pylist())}

    def rows(batch: list[tuple[str, str, bytes | None]]):   # rows taken from the table in batches
        got = samples.take([wanted[p] for p, _, _ in batch]).to_pylist() if batch else []
        yield from ((r, where, data) for r, (_, where, data) in zip(got, batch))

    lo, hi = part_archives(archives, part, num_parts)
    seen: set[str] = set()
    batch: list = []
    for archive in archives[lo:hi]:
        for path, data in _stream(archive, wanted, problems):
            if path in seen:   # the same image in two archives (or twice in one): the first counts
                continue
            seen.add(path)
            batch.append((path, f"{archive.name}:{path}", data))
            if len(batch) >= _BATCH:
                yield from rows(batch)
                batch = []
    yield from rows(batch)
    if part != 0:
        return
    held = set(seen)
    for i, archive in enumerate(archives):
        if not lo <= i < hi:
            held |= _listed(archive, wanted)
    missing = [(path, path, None) for path in wanted if path not in held]
    for i in range(0, len(missing), _BATCH):
        yield from rows(missing[i:i + _BATCH])
