"""Checkpoint folders of a run: ``<output_dir>/checkpoints/step-00001000/``, and their manifests.

A checkpoint holds data only, no pickle (:mod:`.state_io`, written by :mod:`.checkpointer`): the
state files of the model, optimizer, LR scheduler, EMA, ..., one RNG state per process, plus
``trainer_state.json`` (step, epoch, the merged loader position, the config) and, written last,
``manifest.json``: every file's size and sha256. It is written under a hidden name and renamed
when complete: a folder named ``step-*`` is whole when published, so a job killed while saving
resumes from the previous one; :func:`damage` finds what broke later (a truncated, changed or
missing file), and :func:`choose_resume` then falls back to the newest intact checkpoint.

The hidden name is ``webtag.atomic.tmp_name`` with a fixed owner (``.step-00001000.tmp-ranks``):
every rank computes it on its own and writes its part into it; the main process publishes it
(``webtag.atomic.publish``) and then removes what killed saves left (``remove_stale_tmp``).
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from webtag.atomic import publish, remove_stale_tmp, tmp_name
from webtag.digest import sha256_file

from .data import DataError

log = logging.getLogger("pretrain.trainer")
STATE_FILE = "trainer_state.json"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
STEP_NAME = re.compile(r"^step-(\d{8})$")   # a published checkpoint folder
TMP_OWNER = "ranks"   # not a pid: one name that every rank of the job agrees on


class CheckpointError(DataError):
    """A checkpoint that cannot be resumed from, or one that cannot be saved (exit 2)."""


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def tmp_dir(output_dir: str | Path, step: int) -> Path:
    """The folder every rank writes its part of checkpoint ``step`` into (the same on every rank)."""
    return tmp_name(checkpoint_root(output_dir) / checkpoint_name(step), owner=TMP_OWNER)


def checkpoint_folders(output_dir: str | Path) -> list[Path]:
    """Every published ``step-*`` folder, intact or not, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints (with their trainer state), oldest first."""
    return [p for p in checkpoint_folders(output_dir) if (p / STATE_FILE).is_file()]


def write_manifest(folder: Path) -> Path:
    """``manifest.json``: every other file of ``folder`` with its size and sha256 (written last)."""
    files = {f.name: {"size": f.stat().st_size, "sha256": sha256_file(f)}
             for f in sorted(folder.iterdir()) if f.is_file() and f.name != MANIFEST}
    path = folder / MANIFEST
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"format": MANIFEST_FORMAT, "files": files}, fh, indent=1)
    return path


def damage(folder: str | Path) -> tuple[str | None, set[str]]:
    """What is wrong with checkpoint ``folder`` (None if intact: every file of its manifest there,
    with its size and sha256), and the names its manifest lists (the files that may be read)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        return (f"no {MANIFEST} (a checkpoint of an earlier webtag version, whose pickles are not loaded, "
                "or a folder changed after its save)"), set()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        files = doc["files"]
        if doc.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError("unknown format")
        entries = {str(k): (int(v["size"]), str(v["sha256"])) for k, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        return f"{MANIFEST} is damaged ({type(exc).__name__}: {exc})", set()
    for name, (size, digest) in sorted(entries.items()):
        f = folder / name
        if "/" in name or "\\" in name or name.startswith("."):
            return f"{MANIFEST} names {name!r}, not a file of the folder", set()
        if not f.is_file():
            return f"{name} is missing", set()
        actual = f.stat().st_size
        if actual != size:
            return f"{name} is truncated or changed ({actual} bytes, the manifest says {size})", set()
        if sha256_file(f) != digest:
            return f"{name} is changed (its sha256 differs from the manifest's)", set()
    if STATE_FILE not in entries:
        return f"{STATE_FILE} is not in the manifest", set()
    for extra in sorted(p.name for p in folder.iterdir() if p.name not in entries and p.name != MANIFEST):
        log.warning("%s: %s is not in its manifest: ignored (never loaded)", folder, extra)
    return None, set(entries)


def choose_resume(resume: str, output_dir: str | Path) -> tuple[Path | None, set[str]]:
    """The checkpoint to resume and its verified file names. ``auto``: the newest intact one
    (a warning names each damaged newer one and what is wrong); none at all: a fresh start
    (None); only damaged ones: CheckpointError. ``none``: None. A path: that checkpoint, intact."""
    if resume == "none":
        return None, set()
    if resume != "auto":
        path = Path(resume)
        if not path.is_dir():
            raise CheckpointError(f"train.resume={resume}: no such checkpoint folder")
        what, names = damage(path)
        if what:
            raise CheckpointError(f"train.resume={resume}: the checkpoint is damaged: {what}")
        return path, names
    found = checkpoint_folders(output_dir)
    damaged = []
    for path in reversed(found):
        what, names = damage(path)
        if what is None:
            return path, names
        damaged.append(f"{path.name}: {what}")
        log.warning("checkpoint %s is damaged: %s; falling back to an older checkpoint", path, what)
    if damaged:
        raise CheckpointError(f"train.resume=auto: no intact checkpoint in {checkpoint_root(output_dir)} "
                              f"({'; '.join(damaged)}); train.resume=none starts over")
    return None, set()


def read_state(path: str | Path) -> dict:
    with open(Path(path) / STATE_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def finish(tmp: Path, state: dict, keep: int) -> Path:
    """Main process, after every process wrote its part into ``tmp``: add the trainer state and
    the manifest, publish the folder under its final name and delete the oldest beyond ``keep``."""
    with open(tmp / STATE_FILE, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=1)
    write_manifest(tmp)
    final = tmp.parent / checkpoint_name(state["step"])
    if final.exists():
        shutil.rmtree(final)
    publish(tmp, final)
    found = list_checkpoints(tmp.parent.parent)
    for old in found[: max(0, len(found) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)
    remove_stale_tmp(tmp.parent)   # the folders of saves killed before their rename
    return final
