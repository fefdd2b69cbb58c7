"""Reader for web image-text data other than a WebVision release, behind the release's record
interface (``total``, ``classes``, ``queries``, ``query_class``, ``iter_records``, ``locate``):

- img2dataset output: a folder of tar shards ``00000.tar ...`` (or one tar) whose samples hold an
  image (``.jpg``/``.png``/``.webp``), a ``.txt`` caption and a ``.json`` with ``url``, ``key``,
  ``status``; only samples of status ``success`` (or without a status) count. Members are read with
  the tarfile module only (no image decoding here); a record's ``path`` is ``<tar name>/<member>``;
- a Parquet or CSV table with an image column (``image``, ``path``, ``file``, ``url`` or
  ``image_path``), text columns (``caption``, ``text``, ``title``, ``description``, ``tags``: at
  least one) and an optional ``label`` (a wnid of the class list or a class id).

The classes come from the user (``reader.class_list``): a file of WordNet noun ids, one a line,
optionally followed by its names as in WebVision's ``info/synsets.txt``; names default to the
synset's WordNet lemma names. Every class is its own query (query id = class id, source ``web``)
whose text is the class name. A sample without a label takes the class whose name occurs in its
caption (the longest such name; the lowest id on ties), as a web search for that name would have
found it; a sample with neither is dropped and counted (``no_label``).
"""
from __future__ import annotations

import csv
import json
import logging
import re
import tarfile
import warnings
from pathlib import Path
from typing import Iterator

from .config import ReaderConfig
from .problems import Problems
from .release_files import ClassInfo, ImageRecord, ReleaseError, Segment, _as_tags, _as_text, locate, read_classes

log = logging.getLogger(__name__)

SOURCE = "web"
CLASS_LIST_IMAGENET = "imagenet1k"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")
IMAGE_COLUMNS = ("image", "path", "file", "image_path", "url")
TEXT_COLUMNS = {"caption": "title", "text": "title", "title": "title", "description": "description",
                "tags": "tags"}


def open_input(root: str | Path, cfg: ReaderConfig, nltk_data: str | None = None):
    """The reader of ``root``: a WebVision release, or web data when ``cfg.class_list`` is set."""
    if cfg.class_list:
        return WebData(root, cfg, nltk_data)
    from .webvision import Release
    return Release(root, cfg)


def read_class_list(path: str, nltk_data: str | None = None) -> list[ClassInfo]:
    """The user's classes: wnids checked against WordNet 3.0, names from WordNet where not given."""
    if path == CLASS_LIST_IMAGENET:
        raise ReleaseError("--classes imagenet1k: the ImageNet-1k class list is not shipped with webtag "
                           "yet; give a file of the 1000 wnids (one a line, e.g. ILSVRC's synsets list)")
    p = Path(path)
    if not p.is_file():
        raise ReleaseError(f"classes file {p} does not exist")
    from .wordnet import load_wordnet, synset_from_wnid
    wn = load_wordnet(nltk_data)
    out = []
    for lineno, c in _numbered(read_classes(p), p):
        try:
            with warnings.catch_warnings():   # nltk warns and returns None for an unknown offset
                warnings.simplefilter("ignore")
                syn = synset_from_wnid(wn, c.wnid)
        except Exception:   # or raises WordNetError / ValueError
            syn = None
        if syn is None:
            raise ReleaseError(f"{p}:{lineno}: {c.wnid} is not a WordNet 3.0 noun synset")
        words = c.words or tuple(name.replace("_", " ") for name in syn.lemma_names())
        out.append(ClassInfo(c.class_id, c.wnid, words))
    return out


def _numbered(classes: list[ClassInfo], path: Path):
    lines = [i + 1 for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines())
             if line.strip()]
    return zip(lines, classes)


class WebData:
    """img2dataset tar shards or an image-text table, with the user's class list."""

    version = "webdata"
    map_base = 0

    def __init__(self, root: str | Path, cfg: ReaderConfig, nltk_data: str | None = None):
        self.root = Path(root)
        self.cfg = cfg
        self.classes = self.release_classes = read_class_list(cfg.class_list, nltk_data)
        if cfg.classes is not None:
            raise ReleaseError("reader.classes (a class subset) applies to WebVision releases; "
                               "cut the classes file instead")
        self.queries = {SOURCE: {c.class_id: c.name for c in self.classes}}
        self.query_class = {c.class_id: c.class_id for c in self.classes}
        self._by_wnid = {c.wnid: c.class_id for c in self.classes}
        names = sorted(((w.lower(), c.class_id) for c in self.classes for w in c.words),
                       key=lambda t: (-len(t[0]), t[1]))
        self._names = [(re.compile(r"\b" + re.escape(w) + r"\b"), cid) for w, cid in names if w]
        if self.root.is_file() and self.root.suffix.lower() in (".parquet", ".csv"):
            self.kind = "table"
            self._rows = self._read_table(self.root)
            self.segments = [Segment(self.root, None, 0, len(self._rows))]
        else:
            self.kind = "img2dataset"
            self.segments = self._tar_segments()
        self.total = sum(s.lines for s in self.segments)
        log.info("web data (%s) at %s: %d classes, %d samples", self.kind, self.root, len(self.classes),
                 self.total)

    # ---- inputs ------------------------------------------------------------------------------
    def _tar_segments(self) -> list[Segment]:
        tars = [self.root] if self.root.is_file() else sorted(self.root.glob("*.tar"))
        if not tars:
            raise ReleaseError(f"{self.root}: no img2dataset tar shards (*.tar) and not a .parquet/.csv table")
        segs, start, self._members = [], 0, {}
        for tar in tars:
            try:
                with tarfile.open(tar) as tf:
                    names = [m.name for m in tf.getmembers() if m.isfile()]
            except (tarfile.TarError, OSError) as exc:
                raise ReleaseError(f"{tar}: not a readable tar file ({exc})") from None
            keys = [n.rsplit(".", 1)[0] for n in names if n.lower().endswith(IMAGE_EXTS)]
            self._members[tar] = keys
            segs.append(Segment(tar, None, start, len(keys)))
            start += len(keys)
        return segs

    def _read_table(self, path: Path) -> list[dict]:
        try:
            if path.suffix.lower() == ".csv":
                with open(path, encoding="utf-8", errors="replace", newline="") as fh:
                    rows = list(csv.DictReader(fh))
                columns = list(rows[0]) if rows else []
            else:
                import pyarrow.parquet as pq
                t = pq.read_table(path)
                rows, columns = t.to_pylist(), t.column_names
        except (OSError, ValueError, csv.Error) as exc:
            raise ReleaseError(f"{path}: cannot read the table ({exc})") from None
        self._image_col = next((c for c in IMAGE_COLUMNS if c in columns), None)
        self._text_cols = [c for c in TEXT_COLUMNS if c in columns]
        if self._image_col is None:
            raise ReleaseError(f"{path}: no image column (one of {', '.join(IMAGE_COLUMNS)}); "
                               f"columns are {', '.join(columns) or 'none'}")
        if not self._text_cols:
            raise ReleaseError(f"{path}: no caption column (one of {', '.join(TEXT_COLUMNS)}); "
                               f"columns are {', '.join(columns)}")
        return rows

    # ---- labels ------------------------------------------------------------------------------
    def _label(self, value, where: str, problems: Problems) -> int | None:
        """Class id of a given label (wnid or id), or None (with a problem counted) if unknown."""
        text = str(value).strip()
        if text in self._by_wnid:
            return self._by_wnid[text]
        if text.lstrip("-").isdigit() and 0 <= int(text) < len(self.classes):
            return int(text)
        problems.add("unknown_class", where, None, f"label {text!r} is not in the class list")
        return None

    def _match(self, rec: ImageRecord) -> int:
        text = " ".join([rec.title, rec.description, *rec.tags]).lower()
        return next((cid for pattern, cid in self._names if pattern.search(text)), -1)

    def _finish(self, rec: ImageRecord, label, where: str, problems: Problems) -> ImageRecord | None:
        if label is not None and str(label).strip() != "":
            cid = self._label(label, where, problems)
            if cid is None:
                return None
        else:
            cid = self._match(rec)
            if cid < 0:
                problems.add("no_label", where, None, f"{rec.key}: no label and no class name in its text")
                return None
        rec.class_id = rec.query_id = cid
        return rec

    # ---- records -----------------------------------------------------------------------------
    def locate(self, index: int) -> tuple[Segment, int]:
        return locate(self.segments, index, "sample index")

    def query_text(self, source: str, query_id: int) -> str:
        return self.queries.get(source, {}).get(query_id, "")

    def iter_records(self, start: int, end: int, problems: Problems) -> Iterator[ImageRecord]:
        for seg in self.segments:
            lo, hi = max(start, seg.start), min(end, seg.start + seg.lines)
            if lo < hi:
                yield from (self._table_records(lo, hi, problems) if self.kind == "table"
                            else self._tar_records(seg, lo, hi, problems))

    def _table_records(self, lo: int, hi: int, problems: Problems) -> Iterator[ImageRecord]:
        for index in range(lo, hi):
            row = self._rows[index]
            where = f"{self.root}:row {index + 1}"
            image = str(row.get(self._image_col) or "").strip()
            if not image:
                problems.add("bad_list_line", str(self.root), f"row {index + 1}", f"empty {self._image_col}")
                continue
            rec = ImageRecord(index, image.rsplit(".", 1)[0], image, SOURCE, -1, -1)
            fields = {"title": [], "description": [], "tags": ()}
            for col in self._text_cols:
                target = TEXT_COLUMNS[col]
                if target == "tags":
                    fields["tags"] = _as_tags(row.get(col))
                else:
                    fields[target].append(_as_text(row.get(col)))
            rec.title, rec.description = " ".join(fields["title"]), " ".join(fields["description"])
            rec.tags, rec.has_meta = tuple(fields["tags"]), True
            rec = self._finish(rec, row.get("label"), where, problems)
            if rec is not None:
                yield rec

    def _tar_records(self, seg: Segment, lo: int, hi: int, problems: Problems) -> Iterator[ImageRecord]:
        keys = self._members[seg.filelist][lo - seg.start:hi - seg.start]
        wanted = {k: lo + i for i, k in enumerate(keys)}
        texts: dict[str, dict[str, bytes]] = {k: {} for k in keys}
        image_names: dict[str, str] = {}
        with tarfile.open(seg.filelist) as tf:   # one sequential pass over the tar
            for m in tf:
                stem, _, ext = m.name.rpartition(".")
                if stem not in wanted or not m.isfile():
                    continue
                if ext.lower() in ("txt", "json"):
                    texts[stem][ext.lower()] = tf.extractfile(m).read()
                elif m.name.lower().endswith(IMAGE_EXTS):
                    image_names.setdefault(stem, m.name)
        for stem in keys:
            index, got = wanted[stem], texts[stem]
            where = f"{seg.filelist}:{stem}"
            meta = {}
            if "json" in got:
                try:
                    meta = json.loads(got["json"].decode("utf-8", errors="replace"))
                    if not isinstance(meta, dict):
                        raise ValueError(f"a {type(meta).__name__}, not an object")
                except ValueError as exc:
                    problems.add("bad_json", where + ".json", None, f"not a JSON object ({exc}); sample dropped")
                    continue
            status = meta.get("status", "success")
            if status != "success":
                continue   # img2dataset's failed downloads: not samples, not problems
            if "txt" not in got:
                problems.add("missing_caption", where, None, f"sample {stem} has no .txt caption; dropped")
                continue
            rec = ImageRecord(index, str(meta.get("key") or stem), f"{seg.filelist.name}/{image_names[stem]}",
                              SOURCE, -1, -1)
            rec.title = got["txt"].decode("utf-8", errors="replace").strip()
            rec.has_meta = True
            rec = self._finish(rec, meta.get("label"), where, problems)
            if rec is not None:
                yield rec

