"""The shard format: what a WebDataset sample holds and the files beside the shards.

This is the boundary between the pipeline and training (pretrain, finetune import it). Samples
follow the conventions of img2dataset and timm's ``wds`` reader, so both read our shards:

    <key>.jpg    the JPEG bytes (as downloaded unless the writer was asked to re-encode)
    <key>.cls    the class id as decimal text (timm's default target key)
    <key>.json   {"key", "index", "path", "source", "class_id", "keyword_ids", "label_ids",
                  "label_weights"}: the text-mining labels of the image

``<key>`` is the image's train-list index as 9 digits (img2dataset style: no dots or slashes);
the samples of an evaluation split (``EVAL_SPLITS``) use their position in the split's list.

Evaluation splits read a list of the release (``SPLIT_LISTS``) or an ImageNet validation folder:

    val           info/val_filelist.txt   ``<name> <class id>``, images in val_images_256/ or val_images/
    test          info/test_filelist.txt  ``<name>``, images in test_images_256/ or test_images/; no
                                          labels: class_id ``NO_CLASS`` (-1), no keyword or label ids
    imagenet_val  the ILSVRC 2012 validation images (pipeline.imagenet_val), in file name order,
                  labelled through their WordNet ids with the class list of the shards

Their samples' .json add ``LIST_INDEX`` (``"list_index"``: the 0-based position of the entry in its
list, what a submission is ordered by) to the keys above, and ``path`` is the entry exactly as
listed (``val000001.jpg``, ``test000001.jpg``, the ImageNet file name): a submission line is keyed
by it. Their ``index`` is the list index too. Train samples have no ``list_index``; their ``path``
is the train-list path (``google/q0001/000000.jpg``).

A split's report records ``LIST_KEYS``: ``list_file`` (the absolute path of the list the split
was packed from: the release's list file, or for imagenet_val the folder), ``list_entries`` (the
entries it holds, images kept or not) and ``list_skipped`` (entries not packed: a missing or broken
image, or for imagenet_val a synset outside the class list); the manifest's metadata carries
them as ``META_LIST``. A split packed with a class subset (``ShardConfig.classes`` or labels mined
with ``reader.classes``) records it as ``classes`` in the report: the release's class ids kept, in
the order of their new ids 0..K-1.

Beside the shards of a split (``SHARDS/train/``, ``SHARDS/val/``): ``manifest.parquet`` (one row
per sample: shard, position in the shard, key, class and keyword ids), ``sizes.json`` (samples per
shard, the file open_clip and our loader read instead of scanning tars) and ``report.json``.
``sizes.json`` is written last: it is the split's completion marker (``split_folder`` and
training require it). The report and the manifest's metadata record the labels the split was
built from (``labels``, ``labels_fingerprint``, ``classes_fingerprint``: the text-mining folder's
``complete.json``; None for a val split sharded without ``--labels``); ``check_labels`` refuses a
split with other labels than the ones it is paired with.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa

from text_mining import schema as tm_schema
from webtag.storage import location

log = logging.getLogger(__name__)

IMAGE_EXT = "jpg"
CLASS_EXT = "cls"
LABELS_EXT = "json"

SPLITS = ("train", "val", "test")                # what `pipeline shard --split all` packs (test if listed)
IMAGENET_VAL_SPLIT = "imagenet_val"             # `pipeline shard --imagenet-val DIR`
EVAL_SPLITS = ("val", "test", IMAGENET_VAL_SPLIT)
SPLIT_LISTS = {"val": "info/val_filelist.txt", "test": "info/test_filelist.txt"}   # under the release root
SPLIT_IMAGE_DIRS = {"val": ("val_images_256", "val_images"), "test": ("test_images_256", "test_images")}
NO_CLASS = -1                                   # class_id (and .cls) of an unlabelled (test) sample
LIST_INDEX = "list_index"                       # .json key: position of an eval sample in its list
LIST_KEYS = ("list_file", "list_entries", "list_skipped")   # in the reports of eval splits
META_LIST = {k: f"webtag.{k}".encode() for k in LIST_KEYS}
MANIFEST_FILE = "manifest.parquet"
SIZES_FILE = "sizes.json"
REPORT_FILE = "report.json"
LABEL_KEYS = ("labels", "labels_fingerprint", "classes_fingerprint")   # in the reports; META_* in manifests
META_LABELS = {k: f"webtag.{k}".encode() for k in LABEL_KEYS}

MANIFEST = pa.schema([
    pa.field("shard", pa.string(), nullable=False),        # tar file name within the split folder
    pa.field("position", pa.int32(), nullable=False),      # sample number within its shard
    pa.field("key", pa.string(), nullable=False),          # __key__ of the sample
    pa.field("index", pa.int64(), nullable=False),         # train-list (or eval list) index
    pa.field("class_id", pa.int32(), nullable=False),      # NO_CLASS in the test split
    pa.field("keyword_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("bytes", pa.int64(), nullable=False),         # size of the stored JPEG
])


def sample_key(index: int) -> str:
    return f"{index:09d}"


def split_folder(root: str | Path, split: str, flag: str = "--split") -> Path:
    """``root/<split>``: a split folder of the shards root ``root`` (``python -m pipeline shard
    --out``, ``data.shards``). A split folder passed as the root (it holds sizes.json itself) or
    a split that is not there is a ValueError saying what to pass instead (``flag``: the command
    line option that names the split)."""
    root = location(root)    # a local folder, an fsspec URL or a pipe: template (webtag.storage)
    if (root / SIZES_FILE).is_file():
        raise ValueError(f"--shards {root} is a split folder (it holds {SIZES_FILE}): pass the shards root "
                         f"and the split, --shards {root.parent} {flag} {root.name}")
    folder = root / split
    if not (folder / SIZES_FILE).is_file():
        there = sorted(p.name for p in root.iterdir() if (p / SIZES_FILE).is_file()) if root.is_dir() else []
        raise ValueError(f"--shards {root} has no finished split {split!r} (no {folder / SIZES_FILE}); "
                         f"its splits: {', '.join(there) or 'none'}")
    return folder


def list_record(split_dir: str | Path) -> dict:
    """``LIST_KEYS`` of a finished evaluation split (its report); ValueError for a train split or
    one packed before webtag recorded them."""
    path = location(split_dir) / REPORT_FILE
    report = json.loads(path.read_text(encoding="utf-8"))
    if "list_file" not in report:
        raise ValueError(f"{path} records no list file: {split_dir} is no evaluation split packed by "
                         f"this webtag (shard it again)")
    return {k: report[k] for k in LIST_KEYS}


def read_sizes(split_dir: str | Path) -> dict[str, int]:
    """Shard file name -> number of samples, in shard order."""
    with (location(split_dir) / SIZES_FILE).open("r", encoding="utf-8") as fh:
        return json.load(fh)


class ShardsMismatch(ValueError):
    """Shards paired with text-mining labels other than the ones they were built from."""


def recorded_labels(split_dir: str | Path) -> dict | None:
    """What a finished split's report records of its labels (``LABEL_KEYS``), or None when it was
    sharded before webtag recorded them."""
    path = location(split_dir) / REPORT_FILE
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShardsMismatch(f"{path} is missing: {split_dir} is not a finished shard split") from None
    except ValueError as exc:
        raise ShardsMismatch(f"{path}: not a shard report ({exc})") from None
    if "labels_fingerprint" not in report:
        return None
    return {k: report.get(k) for k in LABEL_KEYS}


def check_labels(split_dir: str | Path, labels_dir: str | Path, level: str = "labels",
                 old: str = "refuse") -> dict:
    """Refuse (ShardsMismatch) a split built from other labels than ``labels_dir`` (a finished
    text-mining folder: its ``complete.json`` is required, tm_schema.LabelsError otherwise).
    ``level``: ``labels`` compares the whole fingerprint, ``classes`` only the class list (what
    class evaluation needs). A split from before fingerprints: ``old="refuse"`` or ``"warn"``.
    Returns the labels' completion marker."""
    split_dir, labels_dir = location(split_dir), Path(labels_dir)
    marker = tm_schema.read_complete(labels_dir)
    rec = recorded_labels(split_dir)
    key = "classes_fingerprint" if level == "classes" else "labels_fingerprint"
    if rec is None:
        msg = (f"{split_dir} records no labels fingerprint (sharded before webtag recorded one), so its "
               f"pairing with {labels_dir} cannot be checked: shard it again, `python -m pipeline shard "
               f"--labels {labels_dir} --out NEW_FOLDER`")
        if old == "refuse":
            raise ShardsMismatch(msg)
        log.warning("%s", msg)
        return marker
    if rec[key] is None:   # a val split sharded without labels: its class ids are the release's
        return marker
    mine = marker[key.replace("labels_", "")]
    if rec[key] != mine:
        what = "class list" if level == "classes" else "labels"
        raise ShardsMismatch(f"{split_dir} was built from the {what} of {rec['labels']} (fingerprint "
                             f"{tm_schema.short(rec[key])}), not from {labels_dir} (fingerprint "
                             f"{tm_schema.short(mine)}): use the labels the shards were made from, or "
                             f"shard again with --labels {labels_dir}")
    return marker
