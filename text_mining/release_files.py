"""The records and file formats of a WebVision release, shared by its reader (webvision.py) and the
shard writer's eval splits: classes (info/synsets.txt), image records, list segments, class
subsets, and tolerant parsing of the text and JSON files (truncated lists salvaged, any value read
as text or tags). Split from webvision.py so that the reader stays one job."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from webtag.storage import open_binary

SOURCES = ("google", "flickr")


@dataclass(frozen=True)
class ClassInfo:
    class_id: int
    wnid: str
    words: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.words[0] if self.words else self.wnid


@dataclass
class ImageRecord:
    index: int
    key: str
    path: str
    source: str
    query_id: int
    class_id: int
    title: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    has_meta: bool = False


@dataclass(frozen=True)
class Segment:
    filelist: Path
    metalist: Path | None
    start: int          # global index of its first line
    lines: int


class ReleaseError(RuntimeError):
    """The folder is not a WebVision release we can read."""


def class_subset(spec, n: int, key: str = "reader.classes") -> list[int] | None:
    """The release class ids a subset spec keeps, ascending (their new ids are their positions):
    None for None (all ``n`` classes); ``"A:B"`` (either end may be empty) or a list of ids.
    ReleaseError naming ``key`` for ids outside 0..n-1 or an empty slice."""
    from .config import CLASS_SLICE, check_class_spec
    from webtag.config import InvalidValue

    if spec is None:
        return None
    try:
        check_class_spec(key, spec)
    except InvalidValue as exc:
        raise ReleaseError(str(exc)) from None
    if isinstance(spec, str):
        a, b = CLASS_SLICE.match(spec).groups()
        lo, hi = int(a or 0), int(b) if b else n
        if hi > n or lo >= hi:
            raise ReleaseError(f"{key}={spec}: the release has classes 0..{n - 1}, so {lo}:{hi} is no "
                               f"non-empty slice of them")
        return list(range(lo, hi))
    bad = [i for i in spec if not 0 <= i < n]
    if bad:
        raise ReleaseError(f"{key}: class id {bad[0]} is not in 0..{n - 1} (the release's classes)")
    return sorted(spec)


def open_text(path):
    """A text reader of a local path or a URL (webtag.storage: streamed, retried), UTF-8 with bad
    bytes replaced."""
    return io.TextIOWrapper(open_binary(path)[0], encoding="utf-8", errors="replace")


def count_lines(path: Path) -> int:
    n = 0
    last = b"\n"
    with open_binary(path)[0] as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (0 if last == b"\n" else 1)


def _read_lines(path: Path) -> list[str]:
    with open_text(path) as fh:
        return [line.rstrip("\r\n") for line in fh]


def salvage_json_list(text: str) -> list:
    """The complete elements at the start of a truncated or corrupted JSON list."""
    decoder = json.JSONDecoder()
    pos = text.find("[")
    if pos < 0:
        return []
    pos += 1
    out = []
    n = len(text)
    while pos < n:
        while pos < n and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= n or text[pos] == "]":
            break
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
        out.append(obj)
    return out


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return " ".join(_as_text(v) for v in value)
    return str(value)


def _as_tags(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(t for t in value.replace(",", " ").split() if t)
    if isinstance(value, (list, tuple)):
        return tuple(_as_text(v) for v in value if v not in (None, ""))
    return (str(value),)


def read_classes(path: Path) -> list[ClassInfo]:
    """The classes of a release's info/synsets.txt (ReleaseError for a bad line)."""
    classes = []
    for i, line in enumerate(_read_lines(path)):
        if not line.strip():
            continue
        wnid, _, words = line.strip().partition(" ")
        if not (len(wnid) == 9 and wnid[0] == "n" and wnid[1:].isdigit()):
            raise ReleaseError(f"{path}:{i + 1}: {wnid!r} is not a WordNet noun id like n01440764")
        classes.append(ClassInfo(len(classes), wnid,
                                 tuple(w.strip() for w in words.split(",") if w.strip())))
    if not classes:
        raise ReleaseError(f"{path} lists no classes")
    return classes


def locate(segments, index: int, what: str = "train-list index") -> tuple[Segment, int]:
    """The segment (file list or input file) holding a global index, and its 1-based line: the one
    lookup of the WebVision reader and the web-data reader."""
    for seg in segments:
        if seg.start <= index < seg.start + seg.lines:
            return seg, index - seg.start + 1
    total = sum(seg.lines for seg in segments)
    raise IndexError(f"{what} {index} is not in 0..{total - 1}")
