"""Reader for web image-text data other than a WebVision release, behind the release's record
interface (``total``, ``classes``, ``queries``, ``query_class``, ``iter_records``, ``locate``):

- img2dataset output: a folder of tar shards ``00000.tar ...`` (or one tar) whose samples hold an
  image (``.jpg``/``.png``/``.webp``), a ``.txt`` caption and a ``.json`` with ``url``, ``key``,
  ``status``; only samples of status ``success`` (or without a status) count. Members are read with
  the tarfile module only (no image decoding here); a record's ``path`` is ``<tar name>/<member>``;
- a Parquet or CSV table with an image column (``image``, ``path``, ``file``, ``url`` or
  ``image_path``), text columns (``caption``, ``text``, ``title``, ``description``, ``tags``: at
  least one) and an optional ``label`` (a wnid of the class list or a class id).

The input may be a local path or a URL (``s3://bucket/web``, through webtag.storage: streamed
reads with read-ahead and retries). The plan (how many samples each tar holds) comes from
img2dataset's per-shard ``.parquet`` (its successful rows) when every tar has one, so a part opens
only the tars of its own index range, each in one sequential pass (that pass refuses a tar whose
images do not match its ``.parquet``); without them the tars' headers are counted. A table is read
in batches of the part's row range, only the columns used.

The classes come from the user (``reader.class_list``, text_mining/class_list.py). Every class is
its own query (query id = class id, source ``web``) whose text is the class name. A sample without
a label takes the class whose name occurs in its caption (the longest such name; the lowest id on
ties), as a web search for that name would have found it; a sample with neither is dropped and
counted (``no_label``).
"""
from __future__ import annotations

import bisect
import contextlib
import csv
import io
import json
import logging
import tarfile
from pathlib import Path
from typing import Iterator

from webtag.storage import location, open_binary

from .class_list import IMAGENET1K, NameMatcher, read_class_list   # noqa: F401 - read_class_list: API
from .config import ReaderConfig
from .problems import Problems
from .release_files import ImageRecord, ReleaseError, Segment, _as_tags, _as_text, locate

log = logging.getLogger(__name__)

SOURCE = "web"
CLASS_LIST_IMAGENET = IMAGENET1K
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")
IMAGE_COLUMNS = ("image", "path", "file", "image_path", "url")
TEXT_COLUMNS = {"caption": "title", "text": "title", "title": "title", "description": "description",
                "tags": "tags"}
BATCH_ROWS = 8192      # table rows read at a time


def open_input(root, cfg: ReaderConfig, nltk_data: str | None = None):
    """The reader of ``root``: a WebVision release, or web data when ``cfg.class_list`` is set."""
    if cfg.class_list:
        return WebData(root, cfg, nltk_data)
    from .webvision import Release
    return Release(root, cfg)


def _input_error(where, exc: BaseException) -> ReleaseError:
    return ReleaseError(f"{where}: cannot read it ({type(exc).__name__}: {exc})")


class WebData:
    """img2dataset tar shards or an image-text table, with the user's class list."""

    version = "webdata"
    map_base = 0

    def __init__(self, root, cfg: ReaderConfig, nltk_data: str | None = None):
        self.root = location(root)
        self.cfg = cfg
        self.classes = self.release_classes = read_class_list(cfg.class_list, nltk_data)
        if cfg.classes is not None:
            raise ReleaseError("reader.classes (a class subset) applies to WebVision releases; "
                               "cut the classes file instead")
        self.queries = {SOURCE: {c.class_id: c.name for c in self.classes}}
        self.query_class = {c.class_id: c.class_id for c in self.classes}
        self._by_wnid = {c.wnid: c.class_id for c in self.classes}
        self._matcher = NameMatcher(self.classes)
        try:
            is_table = self.root.name.lower().endswith((".parquet", ".csv")) and self.root.is_file()
            if is_table:
                self.kind = "table"
                self.segments = [Segment(self.root, None, 0, self._open_table())]
            else:
                self.kind = "img2dataset"
                self.segments = self._tar_segments()
        except (OSError, ValueError) as exc:   # a remote folder that cannot be listed, a bad .parquet
            if isinstance(exc, ReleaseError):
                raise
            raise _input_error(self.root, exc) from None
        self.total = sum(s.lines for s in self.segments)
        log.info("web data (%s) at %s: %d classes, %d samples", self.kind, self.root, len(self.classes),
                 self.total)

    # ---- inputs ------------------------------------------------------------------------------
    def _tar_segments(self) -> list[Segment]:
        if self.root.is_file():
            entries, tars = [self.root], [self.root]
        else:
            entries = sorted(self.root.iterdir(), key=lambda p: p.name) if self.root.is_dir() else []
            tars = [p for p in entries if p.name.endswith(".tar") and not p.name.startswith(".")]
        if not tars:
            raise ReleaseError(f"{self.root}: no img2dataset tar shards (*.tar) and not a .parquet/.csv table")
        names = {p.name for p in entries}
        self._planned_from_parquet = all(t.name[:-4] + ".parquet" in names for t in tars)
        segs, start = [], 0
        for tar in tars:
            n = self._parquet_count(tar) if self._planned_from_parquet else self._header_count(tar)
            segs.append(Segment(tar, None, start, n))
            start += n
        return segs

    @staticmethod
    def _parquet_count(tar) -> int:
        """Successful samples in img2dataset's ``<shard>.parquet`` next to ``tar``."""
        import pyarrow.parquet as pq
        meta_file = tar.parent / (tar.name[:-4] + ".parquet")
        fh, _ = open_binary(meta_file)
        try:
            pf = pq.ParquetFile(fh)
            if "status" not in pf.schema_arrow.names:
                return pf.metadata.num_rows
            return sum(v == "success" for v in pf.read(columns=["status"]).column("status").to_pylist())
        except (OSError, ValueError) as exc:
            raise _input_error(meta_file, exc) from None
        finally:
            fh.close()

    @staticmethod
    def _header_count(tar) -> int:
        try:
            with _open_tar(tar) as tf:
                return sum(1 for m in tf if m.isfile() and m.name.lower().endswith(IMAGE_EXTS))
        except (tarfile.TarError, OSError) as exc:
            raise ReleaseError(f"{tar}: not a readable tar file ({exc})") from None

    def _open_table(self) -> int:
        """Check the table's columns; its number of rows."""
        if self.root.name.lower().endswith(".csv"):
            with _open_csv(self.root) as reader:
                columns = list(reader.fieldnames or [])
                rows = sum(1 for _ in reader)
        else:
            import pyarrow.parquet as pq
            fh, _ = open_binary(self.root)
            try:
                pf = pq.ParquetFile(fh)
                columns, rows = pf.schema_arrow.names, pf.metadata.num_rows
                self._group_starts = [0]
                for i in range(pf.metadata.num_row_groups):
                    self._group_starts.append(self._group_starts[-1] + pf.metadata.row_group(i).num_rows)
            finally:
                fh.close()
        self._image_col = next((c for c in IMAGE_COLUMNS if c in columns), None)
        self._text_cols = [c for c in TEXT_COLUMNS if c in columns]
        if self._image_col is None:
            raise ReleaseError(f"{self.root}: no image column (one of {', '.join(IMAGE_COLUMNS)}); "
                               f"columns are {', '.join(columns) or 'none'}")
        if not self._text_cols:
            raise ReleaseError(f"{self.root}: no caption column (one of {', '.join(TEXT_COLUMNS)}); "
                               f"columns are {', '.join(columns)}")
        self._columns = [self._image_col, *self._text_cols] + (["label"] if "label" in columns else [])
        return rows

    def _table_rows(self, lo: int, hi: int) -> Iterator[tuple[int, dict]]:
        """(index, row) for the table rows lo..hi-1: only the columns used, read in batches (a read
        error is a ReleaseError naming the table; the caller's errors do not pass through here)."""
        try:
            yield from self._read_rows(lo, hi)
        except (OSError, ValueError, csv.Error) as exc:
            raise _input_error(self.root, exc) from None

    def _read_rows(self, lo: int, hi: int) -> Iterator[tuple[int, dict]]:
        if self.root.name.lower().endswith(".csv"):
            with _open_csv(self.root) as reader:
                for index, row in enumerate(reader):
                    if index >= hi:
                        return
                    if index >= lo:
                        yield index, row
            return
        import pyarrow.parquet as pq
        first = bisect.bisect_right(self._group_starts, lo) - 1
        last = bisect.bisect_left(self._group_starts, hi)
        fh, _ = open_binary(self.root)
        try:
            pf = pq.ParquetFile(fh)
            index = self._group_starts[first]
            for batch in pf.iter_batches(BATCH_ROWS, row_groups=range(first, last), columns=self._columns):
                rows = batch.to_pylist()
                for i, row in enumerate(rows[max(0, lo - index):max(0, hi - index)]):
                    yield max(lo, index) + i, row
                index += len(rows)
                if index >= hi:
                    return
        finally:
            fh.close()

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
        return self._matcher.match(" ".join([rec.title, rec.description, *rec.tags]).lower())

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
        for index, row in self._table_rows(lo, hi):
            rec = self._table_record(index, row, problems)
            if rec is not None:
                yield rec

    def _table_record(self, index: int, row: dict, problems: Problems) -> ImageRecord | None:
        where = f"{self.root}:row {index + 1}"
        image = str(row.get(self._image_col) or "").strip()
        if not image:
            problems.add("bad_list_line", str(self.root), f"row {index + 1}", f"empty {self._image_col}")
            return None
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
        return self._finish(rec, row.get("label"), where, problems)

    def _read_tar(self, seg: Segment) -> tuple[list[str], dict[str, dict[str, bytes]], dict[str, str]]:
        """One sequential pass over a tar: its image stems in order, the .txt/.json of each stem,
        the image member of each stem."""
        keys, texts, image_names = [], {}, {}
        try:
            with _open_tar(seg.filelist) as tf:
                for m in tf:
                    if not m.isfile():
                        continue
                    stem, _, ext = m.name.rpartition(".")
                    if ext.lower() in ("txt", "json"):
                        texts.setdefault(stem, {})[ext.lower()] = tf.extractfile(m).read()
                    elif m.name.lower().endswith(IMAGE_EXTS):
                        keys.append(stem)
                        image_names.setdefault(stem, m.name)
        except (tarfile.TarError, OSError) as exc:
            raise ReleaseError(f"{seg.filelist}: not a readable tar file ({exc})") from None
        if len(keys) != seg.lines:
            raise ReleaseError(f"{seg.filelist} holds {len(keys)} images but its .parquet lists {seg.lines} "
                               "successful samples: the tar and its .parquet are not from one img2dataset "
                               "run; remove the .parquet files to count the samples from the tars")
        return keys, texts, image_names

    def _tar_records(self, seg: Segment, lo: int, hi: int, problems: Problems) -> Iterator[ImageRecord]:
        all_keys, all_texts, image_names = self._read_tar(seg)
        keys = all_keys[lo - seg.start:hi - seg.start]
        wanted = {k: lo + i for i, k in enumerate(keys)}
        for stem in keys:
            index, got = wanted[stem], all_texts.get(stem, {})
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


@contextlib.contextmanager
def _open_tar(path) -> Iterator[tarfile.TarFile]:
    """A tar for one pass in member order: a local file with seeks over the image data, a remote
    one streamed (each byte fetched once, with read-ahead)."""
    if isinstance(path, Path):
        with tarfile.open(path) as tf:
            yield tf
        return
    fh, _ = open_binary(path)
    try:
        with tarfile.open(fileobj=fh, mode="r|") as tf:
            yield tf
    finally:
        fh.close()


@contextlib.contextmanager
def _open_csv(path) -> Iterator[csv.DictReader]:
    """A csv.DictReader over a local or remote file."""
    fh, _ = open_binary(path)
    with io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="") as text:
        yield csv.DictReader(text)
