"""The sample tables of the evaluation splits (val, test, imagenet_val) and the class list they use.

An evaluation sample table has the columns of the train table (text_mining.schema IMAGES) that
the shard writer needs, plus ``file`` (where the image is read) and ``list_index`` (its position
in the split's list, ``schema.LIST_INDEX``); its ``path`` is the list entry itself. The table's
metadata carries ``list_file`` and ``list_entries`` (``schema.LIST_KEYS``) and the class subset.

The class list: with ``--labels``, the labels' ``classes.parquet`` (mined perhaps with
``reader.classes``); otherwise the release's ``info/synsets.txt``, cut to ``ShardConfig.classes``.
Both address classes by WordNet id, so val and ImageNet-val images are labelled with the class ids
of the labels the model trains on; entries of classes outside the list are left out (counted as
``outside_classes``). A ``classes`` subset given with ``--labels`` must be the labels' own list.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from text_mining import schema as tm_schema
from text_mining.webvision import ReleaseError, class_subset, read_classes
from webtag.storage import location

from . import schema
from .imagenet_val import ImageNetValError, read_imagenet_val

log = logging.getLogger(__name__)

META_SUBSET = b"webtag.classes"
META_OUTSIDE = b"webtag.outside_classes"


def class_list(root: str | Path, labels_dir: str | Path | None, classes=None) -> tuple[list[str], list[int] | None]:
    """(the wnids of the class list, in class id order; the release class ids they are, or None
    when they are the release's classes unchanged). Labels mined from web data bring their own."""
    from .webdata_input import is_webdata_labels, webdata_classes
    if is_webdata_labels(labels_dir):
        return webdata_classes(labels_dir, classes)
    try:
        release = read_classes(location(root) / "info" / "synsets.txt")
        wanted = class_subset(classes, len(release), "classes")
    except (ReleaseError, FileNotFoundError) as exc:
        raise ValueError(str(exc)) from None
    release_ids = {c.wnid: c.class_id for c in release}
    if labels_dir is None:
        if wanted is None:
            return [c.wnid for c in release], None
        return [release[i].wnid for i in wanted], wanted
    path = Path(labels_dir) / tm_schema.CLASSES_FILE
    wnids = [str(w) for w in pq.read_table(path, columns=["wnid"]).column("wnid").to_pylist()]
    unknown = [w for w in wnids if w not in release_ids]
    if unknown:
        raise ValueError(f"{path}: class {unknown[0]} is not in {location(root) / 'info' / 'synsets.txt'}: "
                         f"these labels were mined from another release")
    ids = [release_ids[w] for w in wnids]
    if wanted is not None and ids != wanted:
        raise ValueError(f"classes={classes} is not the class list of --labels {labels_dir} ({len(ids)} classes): "
                         f"mine the labels with reader.classes={classes}, or leave classes unset")
    return wnids, (None if ids == list(range(len(release))) else ids)


def _table(rows: dict, list_file: Path, entries: int, subset, outside: int) -> pa.Table:
    n = len(rows["index"])
    t = pa.table({
        "index": pa.array(rows["index"], pa.int64()), "key": rows["key"], "path": rows["path"],
        "source": rows["source"], "class_id": pa.array(rows["class_id"], pa.int32()),
        "keyword_ids": pa.array([[] for _ in range(n)], pa.list_(pa.int32())),
        "label_ids": pa.array([[c] if c != schema.NO_CLASS else [] for c in rows["class_id"]], pa.list_(pa.int32())),
        "label_weights": pa.array([[1.0] if c != schema.NO_CLASS else [] for c in rows["class_id"]],
                                  pa.list_(pa.float32())),
        "file": rows["file"], schema.LIST_INDEX: pa.array(rows["index"], pa.int64()),
    })
    meta = {schema.META_LIST["list_file"]: str(list_file.resolve() if isinstance(list_file, Path) else list_file).encode(),
            schema.META_LIST["list_entries"]: str(entries).encode(),
            META_SUBSET: json.dumps(subset).encode(), META_OUTSIDE: str(outside).encode()}
    return t.replace_schema_metadata(meta)


def _rows() -> dict:
    return {k: [] for k in ("index", "key", "path", "source", "class_id", "file")}


def list_samples(split: str, root: str | Path, labels_dir: str | Path | None = None, classes=None) -> pa.Table:
    """The val or test samples of a release: the split's list (``schema.SPLIT_LISTS``), images in
    the first of ``schema.SPLIT_IMAGE_DIRS`` that exists. Val entries are ``<name> <class id>``
    (the release's ids, mapped to the class list); test entries are ``<name>`` (an extra integer
    column, a placeholder label, is ignored) and get ``schema.NO_CLASS``."""
    root = location(root)   # a local folder or a URL (webtag.storage)
    listing = root / schema.SPLIT_LISTS[split]
    if not listing.is_file():
        raise FileNotFoundError(f"{listing} is missing: the release has no {split} list")
    dirs = schema.SPLIT_IMAGE_DIRS[split]
    folder = next((d for d in dirs if (root / d).is_dir()), dirs[0])
    remap = None
    subset = None
    if split == "val":
        wnids, subset = class_list(root, labels_dir, classes)
        new_ids = {w: i for i, w in enumerate(wnids)}
        remap = {c.class_id: new_ids.get(c.wnid) for c in read_classes(root / "info" / "synsets.txt")}
    rows, position, outside = _rows(), 0, 0
    for lineno, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if split == "val" and (len(parts) != 2 or not parts[1].isdigit()):
            raise ValueError(f"{listing}:{lineno}: expected '<file name> <class id>', got {line!r}")
        if split == "test" and (len(parts) > 2 or len(parts) == 2 and not parts[1].lstrip("-").isdigit()):
            raise ValueError(f"{listing}:{lineno}: expected '<file name>', got {line!r}")
        index, position = position, position + 1
        if split == "val":
            if int(parts[1]) not in remap:
                raise ValueError(f"{listing}:{lineno}: class id {parts[1]} is not in 0..{len(remap) - 1} "
                                 f"(info/synsets.txt)")
            cid = remap[int(parts[1])]
            if cid is None:
                outside += 1
                continue
        else:
            cid = schema.NO_CLASS
        rows["index"].append(index)
        rows["key"].append(parts[0].rsplit(".", 1)[0])
        rows["path"].append(parts[0])
        rows["source"].append(split)
        rows["class_id"].append(cid)
        rows["file"].append(str(root / folder / parts[0]))
    return _table(rows, listing, len(rows["index"]), subset, outside)


def imagenet_samples(folder: str | Path, root: str | Path, labels_dir: str | Path | None = None,
                     classes=None, labels_file: str | Path | None = None, strict: bool = False) -> pa.Table:
    """The ImageNet validation images of ``folder`` (pipeline.imagenet_val) labelled with the
    class list; images of synsets the list lacks are dropped with a warning, or with ``strict``
    refused (ImageNetValError naming the synsets)."""
    images, source = read_imagenet_val(folder, labels_file)
    wnids, subset = class_list(root, labels_dir, classes)
    ids = {w: i for i, w in enumerate(wnids)}
    missing = sorted({v.wnid for v in images} - set(ids))
    if missing:
        n_out = sum(v.wnid not in ids for v in images)
        msg = (f"--imagenet-val {folder}: {len(missing)} of its synsets ({', '.join(missing[:5])}"
               f"{', ...' if len(missing) > 5 else ''}) are not in the class list, {n_out} images")
        if strict:
            raise ImageNetValError(msg + " (imagenet_strict=true refuses them; unset it to drop them)")
        log.warning("%s dropped", msg)
    rows, outside = _rows(), 0
    for index, v in enumerate(images):
        if v.wnid not in ids:
            outside += 1
            continue
        rows["index"].append(index)
        rows["key"].append(v.name.rsplit(".", 1)[0])
        rows["path"].append(v.name)
        rows["source"].append(schema.IMAGENET_VAL_SPLIT)
        rows["class_id"].append(ids[v.wnid])
        rows["file"].append(str(v.file))
    log.info("ImageNet val at %s (labels: %s): %d images, %d kept", folder, source, len(images), len(rows["index"]))
    return _table(rows, Path(folder), len(rows["index"]), subset, outside)


def table_lists(samples: pa.Table) -> dict:
    """What a sample table records for the split's report: list_file, list_entries, classes,
    outside_classes (empty for a train table)."""
    meta = samples.schema.metadata or {}
    if schema.META_LIST["list_file"] not in meta:
        return {}
    return {"list_file": meta[schema.META_LIST["list_file"]].decode(),
            "list_entries": int(meta[schema.META_LIST["list_entries"]]),
            "classes": json.loads(meta[META_SUBSET]), "outside_classes": int(meta[META_OUTSIDE])}
