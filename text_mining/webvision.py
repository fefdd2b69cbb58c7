"""Reader for WebVision releases (1.0 and 2.0 layouts): classes, queries, file lists, metadata.

See docs/webvision.md for the layout. Images are addressed by their position
(``index``) in the training list: ``info/train_filelist_all.txt`` when present, otherwise the
Google list followed by the Flickr list. A part of the work is a contiguous range of that list
(``webtag.parallel.part_range(release.total, part, num_parts)``), so N parts read exactly the
records one part reads, in the same order.

A class subset (``reader.classes``, ``class_subset``: e.g. ``0:50`` for mini-WebVision) keeps the
images, queries and classes of those classes only, renumbered 0..K-1 in ascending order of their
release ids; ``reader.sources`` keeps the images of those sources. Images left out by either are
not counted as problems; their train-list indices are skipped, not reused.

The release may be a local folder or a URL (``s3://bucket/webvision``, through webtag.storage:
lists and metadata JSON streamed, transient errors retried); at a URL, listed images are not
checked one request each unless ``reader.check_images=always``.
"""
from __future__ import annotations

import collections
import itertools
import json
import logging
from pathlib import Path
from typing import Iterator

from webtag.storage import location

from .config import ReaderConfig
from .problems import Problems
from .release_files import (  # noqa: F401  (re-exported: the reader's public names)
    SOURCES, ClassInfo, ImageRecord, ReleaseError, Segment, _as_tags, _as_text, _read_lines,
    class_subset, count_lines, locate, open_text, read_classes, salvage_json_list)

log = logging.getLogger(__name__)


class Release:
    """One WebVision release folder."""

    def __init__(self, root: str | Path, cfg: ReaderConfig | None = None):
        self.root = location(root)   # a local folder, or a URL (webtag.storage: streamed, retried)
        self.cfg = cfg or ReaderConfig()
        info = self.root / "info"
        if not (info / "synsets.txt").is_file():
            raise ReleaseError(f"{self.root} is not a WebVision release: {info / 'synsets.txt'} is missing")
        for s in self.cfg.sources:
            if s not in SOURCES:
                raise ReleaseError(f"reader.sources: unknown source {s!r} (valid: {', '.join(SOURCES)})")
        self.release_classes = self._read_classes(info / "synsets.txt")
        self.version, self.queries = self._read_queries(info)
        self.classes = self.release_classes
        self.query_class, self.map_base = self._read_query_map(info / "queries_synsets_map.txt")
        kept = class_subset(self.cfg.classes, len(self.release_classes))
        self.subset = kept   # release class ids kept (None: all); class ids are positions in it
        self.class_map = None if kept is None else {old: new for new, old in enumerate(kept)}
        if kept is not None:
            self.classes = [ClassInfo(new, self.release_classes[old].wnid, self.release_classes[old].words)
                            for new, old in enumerate(kept)]
            self.query_class = {q: self.class_map[c] for q, c in self.query_class.items() if c in self.class_map}
        self.segments = self._segments(info)
        self.total = sum(s.lines for s in self.segments)
        self.images_root = location(self.cfg.images_root) if self.cfg.images_root else self.root
        self._json_resolver = None
        self._bad_json: set[Path] = set()
        self._last_json: tuple = (None, None, None, None)   # json_rel, resolver, path, str(path)
        self._check_images = self._want_image_check()
        log.info("WebVision %s layout at %s: %d classes%s, %d queries, %d train list lines; "
                 "query map is %d-based", self.version, self.root, len(self.classes),
                 "" if kept is None else f" (of {len(self.release_classes)}: reader.classes)",
                 len(self.query_class), self.total, self.map_base)

    # ---- info/ files -------------------------------------------------------------------------
    def _read_classes(self, path: Path) -> list[ClassInfo]:
        return read_classes(path)

    def _read_queries(self, info: Path) -> tuple[str, dict[str, dict[int, str]]]:
        def parse(path: Path) -> dict[int, str]:
            out = {}
            for i, line in enumerate(_read_lines(path)):
                if not line.strip():
                    continue
                qid, _, words = line.strip().partition(" ")
                if not qid.isdigit():
                    raise ReleaseError(f"{path}:{i + 1}: query id {qid!r} is not a number")
                out[int(qid)] = words.replace("+", " ").strip()
            return out

        if (info / "queries.txt").is_file():
            shared = parse(info / "queries.txt")
            return "2.0", {s: shared for s in SOURCES}
        per_source = {s: info / f"queries_{s}.txt" for s in SOURCES}
        if all(p.is_file() for p in per_source.values()):
            return "1.0", {s: parse(p) for s, p in per_source.items()}
        raise ReleaseError(f"{info}: neither queries.txt (2.0) nor queries_google.txt and "
                           "queries_flickr.txt (1.0) found")

    def _read_query_map(self, path: Path) -> tuple[dict[int, int], int]:
        if not path.is_file():
            raise ReleaseError(f"{path} is missing")
        pairs = []
        for i, line in enumerate(_read_lines(path)):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
                raise ReleaseError(f"{path}:{i + 1}: expected '<query id> <class index>', got {line!r}")
            pairs.append((int(parts[0]), int(parts[1])))
        indices = [c for _, c in pairs]
        n = len(self.classes)
        if 0 in indices:
            base = 0
        elif max(indices) == n:
            base = 1
        else:
            base = 1 if self.version == "1.0" else 0
            log.warning("%s: cannot tell whether class indices are 0- or 1-based; assuming %d-based "
                        "(the %s convention)", path, base, self.version)
        mapping = {q: c - base for q, c in pairs}
        bad = [q for q, c in mapping.items() if not 0 <= c < n]
        if bad:
            raise ReleaseError(f"{path}: query {bad[0]} maps outside the {n} classes "
                               f"(read as {base}-based)")
        return mapping, base

    def _segments(self, info: Path) -> list[Segment]:
        names = [("all",)] if (info / "train_filelist_all.txt").is_file() else [(s,) for s in SOURCES]
        segs, start = [], 0
        for (name,) in names:
            fl = info / f"train_filelist_{name}.txt"
            if not fl.is_file():
                if name == "all":
                    continue
                log.warning("%s is missing: no %s images", fl, name)
                continue
            ml = info / f"train_meta_list_{name}.txt"
            n = count_lines(fl)
            segs.append(Segment(fl, ml if ml.is_file() else None, start, n))
            start += n
        if not segs:
            raise ReleaseError(f"{info}: no train_filelist_*.txt found")
        return segs

    def _want_image_check(self) -> bool:
        mode = self.cfg.check_images
        if mode != "auto":
            return mode == "always"
        if not isinstance(self.images_root, Path):   # one request per image: only when asked for
            log.info("images at a URL (%s): not checking that listed images exist "
                     "(reader.check_images=always forces it)", self.images_root)
            return False
        # auto: check when images are there at all (releases may ship them as tars elsewhere)
        with open_text(self.segments[0].filelist) as fh:
            sample = [line.split()[0] for line in itertools.islice(fh, 50) if line.split()]
        present = any((self.images_root / p).is_file() for p in sample)
        if not present:
            log.info("no train images under %s: not checking that listed images exist "
                     "(reader.check_images=always forces it)", self.images_root)
        return present

    # ---- parts (webtag.parallel.part_range over ``total``) -----------------------------------
    def locate(self, index: int) -> tuple[Segment, int]:
        """The file list and 1-based line of a train-list index."""
        return locate(self.segments, index)

    def query_text(self, source: str, query_id: int) -> str:
        return self.queries.get(source, {}).get(query_id, "")

    # ---- metadata JSON -----------------------------------------------------------------------
    def _resolver(self, json_rel: str):
        """Pick, once, where meta-list JSON paths live (copies of the release differ)."""
        if self._json_resolver is None:
            if self.cfg.meta_root:
                base = location(self.cfg.meta_root)
                self._json_resolver = lambda rel: base / rel
            else:
                candidates = [
                    ("root", lambda rel: self.root / rel),
                    ("meta/", lambda rel: self.root / "meta" / rel),
                    ("metadata/", lambda rel: self.root / "metadata" / rel),
                    ("<source>_json/", lambda rel: self.root / rel.replace("/", "_json/", 1)),
                ]
                chosen = next(((n, f) for n, f in candidates if f(json_rel).is_file()), None)
                if chosen is None:
                    return None
                log.info("metadata JSON found under %s (%s)", chosen[0], chosen[1](json_rel).parent)
                self._json_resolver = chosen[1]
        return self._json_resolver

    def _load_json(self, path: Path, problems: Problems) -> list | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            problems.add("missing_json", str(path), None, "metadata file not found")
            return None
        except OSError as exc:
            problems.add("missing_json", str(path), None, f"cannot read: {exc}")
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.add("non_utf8", str(path), f"byte {exc.start}",
                         f"not UTF-8 ({exc.reason}); decoded with replacement characters")
            text = raw.decode("utf-8", errors="replace")
        text = text.lstrip("\ufeff")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            records = salvage_json_list(text)
            problems.add("bad_json", str(path), f"{exc.lineno}:{exc.colno}",
                         f"{exc.msg}; salvaged the {len(records)} complete records before it")
            self._bad_json.add(path)
            return records
        if not isinstance(data, list):
            problems.add("bad_json", str(path), None,
                         f"top level is a {type(data).__name__}, not a list of records")
            self._bad_json.add(path)
            return []
        return data

    # ---- records -----------------------------------------------------------------------------
    def iter_records(self, start: int, end: int, problems: Problems) -> Iterator[ImageRecord]:
        """Records with global index in [start, end), in list order, with their metadata."""
        cache: collections.OrderedDict[str, list | None] = collections.OrderedDict()
        for seg in self.segments:
            lo, hi = max(start, seg.start), min(end, seg.start + seg.lines)
            if lo >= hi:
                continue
            yield from self._iter_segment(seg, lo, hi, problems, cache)

    def _iter_segment(self, seg: Segment, lo: int, hi: int, problems: Problems, cache) -> Iterator[ImageRecord]:
        n_classes = len(self.release_classes)
        class_map = self.class_map
        with open_text(seg.filelist) as fl:
            files = itertools.islice(fl, lo - seg.start, hi - seg.start)
            if seg.metalist is not None:
                ml = open_text(seg.metalist)
                metas = itertools.islice(ml, lo - seg.start, hi - seg.start)
            else:
                ml, metas = None, iter(())
            try:
                for offset, (fline, mline) in enumerate(itertools.zip_longest(files, metas)):
                    index = lo + offset
                    lineno = index - seg.start + 1
                    if fline is None:
                        problems.add("list_mismatch", str(seg.metalist), lineno,
                                     f"meta list is longer than {seg.filelist.name}")
                        continue
                    parts = fline.split()
                    if not parts:
                        continue
                    if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                        problems.add("bad_list_line", str(seg.filelist), lineno,
                                     f"expected '<image path> <class id>', got {fline.strip()!r}")
                        continue
                    path, class_id = parts[0], int(parts[1])
                    if not 0 <= class_id < n_classes:
                        problems.add("unknown_class", str(seg.filelist), lineno,
                                     f"class id {class_id} is not in 0..{n_classes - 1}")
                        continue
                    if class_map is not None:
                        if class_id not in class_map:
                            continue
                        class_id = class_map[class_id]
                    comps = path.split("/")
                    source = comps[0] if comps[0] in SOURCES else ""
                    if source not in self.cfg.sources:
                        continue
                    qfolder = comps[1] if len(comps) > 2 else ""
                    query_id = int(qfolder[1:]) if qfolder[1:].isdigit() else -1
                    key = path.rsplit(".", 1)[0] if "." in comps[-1] else path
                    if self._check_images and not (self.images_root / path).is_file():
                        problems.add("missing_image", str(seg.filelist), lineno,
                                     f"{self.images_root / path} does not exist")
                        continue
                    rec = ImageRecord(index, key, path, source, query_id, class_id)
                    if mline is None:
                        if seg.metalist is None:
                            if offset == 0:
                                problems.add("list_mismatch", str(seg.filelist), None,
                                             "no matching train_meta_list file: images have no text")
                        else:
                            problems.add("list_mismatch", str(seg.metalist), lineno,
                                         f"meta list is shorter than {seg.filelist.name}")
                    else:
                        self._attach_meta(rec, mline, seg, lineno, problems, cache)
                    yield rec
            finally:
                if ml is not None:
                    ml.close()

    def _attach_meta(self, rec: ImageRecord, mline: str, seg: Segment, lineno: int,
                     problems: Problems, cache) -> None:
        mparts = mline.split()
        if len(mparts) != 2 or not mparts[1].isdigit() or int(mparts[1]) < 1:
            problems.add("bad_list_line", str(seg.metalist), lineno,
                         f"expected '<json path> <1-based row>', got {mline.strip()!r}")
            return
        json_rel, row = mparts[0], int(mparts[1])
        if rec.query_id < 0:
            stem = Path(json_rel).stem
            rec.query_id = int(stem[1:]) if stem[1:].isdigit() else -1
        resolve = self._resolver(json_rel)
        last = self._last_json   # consecutive records share a JSON file: one path join per file
        if last[0] == json_rel and last[1] is resolve:
            json_path, key = last[2], last[3]
        else:
            json_path = resolve(json_rel) if resolve else self.root / json_rel
            key = str(json_path)
            self._last_json = (json_rel, resolve, json_path, key)
        if key in cache:
            cache.move_to_end(key)
            records = cache[key]
        else:
            records = self._load_json(json_path, problems)
            cache[key] = records
            if len(cache) > 8:
                cache.popitem(last=False)
        if records is None:
            return
        if row > len(records):
            if json_path in self._bad_json:  # counted once as bad_json, with what was salvaged
                return
            problems.add("row_out_of_range", str(seg.metalist), lineno,
                         f"row {row} of {json_path} but it has {len(records)} records")
            return
        meta = records[row - 1]
        if not isinstance(meta, dict):
            problems.add("bad_record", str(json_path), f"row {row}",
                         f"record is a {type(meta).__name__}, not an object")
            return
        rec.title = _as_text(meta.get("title"))
        rec.description = _as_text(meta.get("description"))
        rec.tags = _as_tags(meta.get("tags"))
        rec.has_meta = True
        if not (rec.title.strip() or rec.description.strip() or any(t.strip() for t in rec.tags)):
            problems.add("empty_text", str(json_path), f"row {row}",
                         f"{rec.path}: title, description and tags are all empty or null")
