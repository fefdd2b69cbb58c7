"""``make_example``: check the arguments, draw the plan, write the release atomically, summarise.

The release is written in a hidden sibling folder (``webtag.atomic.atomic_dir``) renamed to
``out`` at the end: a killed run leaves nothing under ``out``'s name, and the next run removes
its leftovers (``remove_stale_tmp``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from webtag.atomic import atomic_dir, remove_stale_tmp
from webvision_example import images as images_mod
from webvision_example import layout
from webvision_example.plan import SOURCES, Plan, draw_plan

log = logging.getLogger(__name__)


def _normalize_version(version) -> str:
    text = str(version).strip()
    text = {"1": "1.0", "2": "2.0"}.get(text, text)
    if text not in layout.VERSIONS:
        raise ValueError(f"version must be one of {', '.join(layout.VERSIONS)}, not {version!r}")
    return text


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
    return int(value)


def _check_out(out: Path) -> None:
    if out.is_dir():
        if any(out.iterdir()):
            raise ValueError(f"{out} is not empty; give a new or empty folder for the example")
    elif out.exists() or out.is_symlink():
        raise ValueError(f"{out} exists and is not a folder")


def _summary(out: Path, version: str, seed: int, plan: Plan, info: dict[str, list[str]]) -> dict:
    train = {s: len(info[f"train_filelist_{s}.txt"]) for s in SOURCES}
    return {
        "out": str(out),
        "version": version,
        "seed": seed,
        "classes": len(plan.classes),
        "queries": len(plan.queries),
        "train": train,
        "train_total": sum(train.values()),
        "val": len(plan.val_labels),
        "test": len(plan.test_labels),
        "json_files": len(plan.metadata),
        "json_records": sum(len(m.records) for m in plan.metadata),
        "images_written": 0,
        "paths": {},
    }


def _paths(out: Path, version: str, info: dict[str, list[str]]) -> dict[str, str]:
    paths = {"root": str(out), "readme": str(out / "README.txt")}
    paths.update({name[:-4]: str(out / "info" / name) for name in info})
    paths["metadata_root"] = str(out / "meta" if version == "2.0" else out)
    return paths


def _write(out: Path, version: str, seed: int, plan: Plan, info: dict[str, list[str]],
           readme: list[str], images: bool, train_tars: int = 0) -> int:
    """Write the release into a hidden folder renamed to ``out``; returns the images written."""
    remove_stale_tmp(out.parent)
    if out.is_dir():
        out.rmdir()  # empty (checked): the finished release takes its place
    written = 0
    with atomic_dir(out) as tmp:
        layout.write_text_files(tmp, plan, version, info, readme)
        if images:
            written = images_mod.write_images(tmp, seed, len(plan.classes), info["train_filelist_all.txt"],
                                              plan.val_labels, plan.test_labels)
            if train_tars:   # the training images as the release's tar files (webvision_example/tars.py)
                from webvision_example.tars import pack_train_archives
                pack_train_archives(tmp, info["train_filelist_all.txt"], train_tars)
    return written


def make_example(out, classes: int = 10, images_per_class: int = 24, seed: int = 0,
                 version: str = "1.0", val_per_class: int = 3, images: bool = True,
                 train_tars: int = 0) -> dict:
    """Write a WebVision-format example release to the new or empty folder ``out``.

    Returns a summary: ``{"out", "version", "seed", "classes", "queries", "train": {"google",
    "flickr"}, "train_total", "val", "test", "json_files", "json_records", "images_written",
    "paths": {name: path}}``. ``train_tars`` N > 0: the training images in N tar archives
    ``webvision_train_XX.tar`` instead of folders. Raises ValueError for a non-empty ``out`` or bad arguments."""
    version = _normalize_version(version)
    n_classes = _check_int("classes", classes, 1)
    per_class = _check_int("images_per_class", images_per_class, 1)
    seed = _check_int("seed", seed, 0)
    val_per_class = _check_int("val_per_class", val_per_class, 0)
    train_tars = _check_int("train_tars", train_tars, 0)
    out = Path(out).expanduser().absolute()
    _check_out(out)

    plan = draw_plan(seed, n_classes, per_class, val_per_class)
    info = layout.info_lists(plan, version)
    summary = _summary(out, version, seed, plan, info)
    summary["images_written"] = _write(out, version, seed, plan, info,
                                       layout.readme_lines(summary, images), images, train_tars)
    summary["paths"] = _paths(out, version, info)
    log.info("example release in %s: %d classes, %d train images, %d json files",
             out, n_classes, summary["train_total"], len(plan.metadata))
    return summary
