"""Reader of the ILSVRC 2012 validation set: its images in file name order with their WordNet ids.

WebVision's classes are WordNet synsets, so ImageNet's validation images serve as a second test
set (``pipeline shard --imagenet-val DIR``: the ``imagenet_val`` split). Layouts read, tried in
this order (``read_imagenet_val``):

(a) a folder per wnid: ``DIR/n01440764/ILSVRC2012_val_00000293.JPEG`` (torchvision's
    ImageFolder layout, what most preparation scripts make);
(b) a flat folder of images and a mapping file, given by ``labels`` or found in ``DIR`` or
    beside it: ``LOC_val_solution.csv`` (Kaggle: ``ImageId,PredictionString``, the first token of
    the prediction string is the wnid) or a ``val.txt``-style list of ``<file name> <label>``
    lines, the label a wnid or a 0-based index into the ``synsets.txt``/``synset_words.txt``
    (``<wnid> <words>`` per line) beside the list;
(c) a flat folder and the devkit: ``ILSVRC2012_validation_ground_truth.txt`` (line i: the
    ILSVRC2012_ID of ``ILSVRC2012_val_<i:08d>.JPEG``) with the devkit's ``data/meta.mat``
    (``synsets``: ILSVRC2012_ID -> WNID, read with scipy.io.loadmat), in ``DIR``, ``DIR/data``,
    ``DIR/ILSVRC2012_devkit_t12/data`` or the same beside ``DIR``.

Bad input (no layout found, an image without a label, a label line that does not parse) is an
``ImageNetValError`` naming the file and line.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
WNID_RE = re.compile(r"^n\d{8}$")
SOLUTION_FILE = "LOC_val_solution.csv"
GROUND_TRUTH_FILE = "ILSVRC2012_validation_ground_truth.txt"
META_FILE = "meta.mat"
LIST_FILES = ("val.txt", "val_labels.txt", "ILSVRC2012_val_labels.txt")
SYNSET_FILES = ("synsets.txt", "synset_words.txt", "LOC_synset_mapping.txt")


class ImageNetValError(ValueError):
    """An ImageNet validation folder webtag cannot read, said in one line."""


@dataclass(frozen=True)
class ValImage:
    name: str        # the file name, what submissions and the samples' ``path`` carry
    file: Path       # where it is
    wnid: str


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _near(folder: Path, names, subdirs=("",)) -> Path | None:
    for base in (folder, folder.parent):
        for sub in subdirs:
            for name in names:
                if (base / sub / name).is_file():
                    return base / sub / name
    return None


def _per_wnid(folder: Path) -> list[ValImage] | None:
    subs = sorted(d for d in folder.iterdir() if d.is_dir() and WNID_RE.match(d.name))
    if not subs:
        return None
    out = [ValImage(p.name, p, d.name) for d in subs for p in _images(d)]
    names = [v.name for v in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ImageNetValError(f"{folder}: {dup} is in more than one wnid folder")
    return sorted(out, key=lambda v: v.name)


def _solution_csv(path: Path) -> dict[str, str]:
    out = {}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        head = next(rows, None)
        if head is None or [h.strip() for h in head[:2]] != ["ImageId", "PredictionString"]:
            raise ImageNetValError(f"{path}:1: expected the header 'ImageId,PredictionString', got {head!r}")
        for lineno, row in enumerate(rows, start=2):
            if not row:
                continue
            wnid = row[1].split()[0] if len(row) == 2 and row[1].split() else ""
            if not WNID_RE.match(wnid):
                raise ImageNetValError(f"{path}:{lineno}: expected '<image id>,<wnid> <box>...', got {','.join(row)!r}")
            out[row[0].strip()] = wnid
    return out


def _synset_order(listing: Path) -> list[str] | None:
    path = next((listing.parent / n for n in SYNSET_FILES if (listing.parent / n).is_file()), None)
    if path is None:
        return None
    wnids = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            wnid = line.split()[0]
            if not WNID_RE.match(wnid):
                raise ImageNetValError(f"{path}:{lineno}: {wnid!r} is not a wnid like n01440764")
            wnids.append(wnid)
    return wnids


def _label_list(path: Path) -> dict[str, str]:
    pairs = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not (WNID_RE.match(parts[1]) or parts[1].isdigit()):
            raise ImageNetValError(f"{path}:{lineno}: expected '<file name> <wnid or class index>', got {line!r}")
        pairs.append((lineno, Path(parts[0]).name, parts[1]))
    if any(label.isdigit() for _, _, label in pairs):
        order = _synset_order(path)
        if order is None:
            raise ImageNetValError(f"{path}: its labels are class indices, but no {' or '.join(SYNSET_FILES)} "
                                   f"beside it says which wnid each index is")
    out = {}
    for lineno, name, label in pairs:
        if label.isdigit():
            if int(label) >= len(order):
                raise ImageNetValError(f"{path}:{lineno}: class index {label} but the synset list has {len(order)}")
            label = order[int(label)]
        out[name] = label
    return out


def _devkit(truth: Path, meta: Path) -> dict[str, str]:
    import scipy.io

    try:
        synsets = scipy.io.loadmat(str(meta), squeeze_me=True)["synsets"]
        id_wnid = {int(i): str(w) for i, w in zip(synsets["ILSVRC2012_ID"], synsets["WNID"])}
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise ImageNetValError(f"{meta}: not the devkit's meta.mat with synsets (ILSVRC2012_ID, WNID): {exc}") from None
    out = {}
    for lineno, line in enumerate(truth.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if not line.strip().isdigit() or int(line) not in id_wnid:
            raise ImageNetValError(f"{truth}:{lineno}: {line.strip()!r} is no ILSVRC2012_ID of {meta}")
        out[f"ILSVRC2012_val_{lineno:08d}"] = id_wnid[int(line)]
    return out


def _mapping(folder: Path, labels: Path | None) -> tuple[dict[str, str], Path]:
    """Image name (with or without extension) -> wnid, and the file it came from."""
    if labels is not None:
        if not labels.is_file():
            raise ImageNetValError(f"{labels}: no such mapping file")
        if labels.suffix == ".csv":
            return _solution_csv(labels), labels
        if labels.name == GROUND_TRUTH_FILE:
            meta = _near(labels.parent, [META_FILE], ("", "data"))
            if meta is None:
                raise ImageNetValError(f"{labels}: no {META_FILE} beside it to map its ILSVRC2012_IDs to wnids")
            return _devkit(labels, meta), labels
        return _label_list(labels), labels
    if (found := _near(folder, [SOLUTION_FILE])) is not None:
        return _solution_csv(found), found
    if (found := _near(folder, LIST_FILES)) is not None:
        return _label_list(found), found
    devkit_dirs = ("", "data", "ILSVRC2012_devkit_t12/data")
    truth, meta = _near(folder, [GROUND_TRUTH_FILE], devkit_dirs), _near(folder, [META_FILE], devkit_dirs)
    if truth is not None and meta is not None:
        return _devkit(truth, meta), truth
    raise ImageNetValError(
        f"{folder}: no ImageNet validation layout found: neither folders per wnid (n01440764/...) nor a "
        f"mapping file ({SOLUTION_FILE}, {' / '.join(LIST_FILES)}, or {GROUND_TRUTH_FILE} with {META_FILE}) "
        f"in it or beside it; name one with --imagenet-labels FILE")


def read_imagenet_val(folder: str | Path, labels: str | Path | None = None) -> tuple[list[ValImage], str]:
    """The validation images of ``folder``, sorted by file name, and where their labels came from
    (the layout, or the mapping file's path)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageNetValError(f"--imagenet-val {folder}: no such folder")
    if labels is None and (per_wnid := _per_wnid(folder)) is not None:
        if not per_wnid:
            raise ImageNetValError(f"{folder}: its wnid folders hold no images")
        return per_wnid, "a folder per wnid"
    images = _images(folder)
    if not images:
        raise ImageNetValError(f"{folder}: no images (.JPEG, .jpg, .png) in it and no folders per wnid")
    mapping, source = _mapping(folder, Path(labels) if labels is not None else None)
    out = []
    for p in images:
        wnid = mapping.get(p.name, mapping.get(p.stem))
        if wnid is None:
            raise ImageNetValError(f"{source}: no label for the image {p.name} of {folder}")
        out.append(ValImage(p.name, p, wnid))
    return out, str(source)
