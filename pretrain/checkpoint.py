"""Checkpoint folders of a run: ``<output_dir>/checkpoints/step-00001000/``.

A checkpoint is Accelerate's ``save_state`` folder (model, optimizer, scaler, RNG states of every
process, and the registered objects: LR scheduler, EMA) plus ``trainer_state.json`` (step, epoch,
the merged loader position, the config). It is written under a hidden name and renamed when
complete, ``trainer_state.json`` last: a folder named ``step-*`` is always whole, so a job killed
while saving resumes from the previous one.

The hidden name is ``webtag.atomic.tmp_name`` with a fixed owner (``.step-00001000.tmp-ranks``):
every rank computes it on its own and writes its part into it; the main process publishes it
(``webtag.atomic.publish``) and then removes what killed saves left (``remove_stale_tmp``).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from webtag.atomic import publish, remove_stale_tmp, tmp_name

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d{8})$")
TMP_OWNER = "ranks"   # not a pid: one name that every rank of the job agrees on


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def tmp_dir(output_dir: str | Path, step: int) -> Path:
    """The folder every rank writes its part of checkpoint ``step`` into (the same on every rank)."""
    return tmp_name(checkpoint_root(output_dir) / checkpoint_name(step), owner=TMP_OWNER)


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _NAME.match(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def resolve_resume(resume: str, output_dir: str | Path) -> Path | None:
    """``auto``: the newest complete checkpoint of the run (None on a fresh run); ``none``; or a path."""
    if resume == "none":
        return None
    if resume == "auto":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"train.resume={resume}: not a complete checkpoint folder (no {STATE_FILE})")
    return path


def read_state(path: str | Path) -> dict:
    with open(Path(path) / STATE_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def finish(tmp: Path, state: dict, keep: int) -> Path:
    """Main process, after every process wrote its part into ``tmp``: add the trainer state,
    publish the folder under its final name and delete the oldest beyond ``keep``."""
    with open(tmp / STATE_FILE, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=1)
    final = tmp.parent / checkpoint_name(state["step"])
    if final.exists():
        shutil.rmtree(final)
    publish(tmp, final)
    found = list_checkpoints(tmp.parent.parent)
    for old in found[: max(0, len(found) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)
    remove_stale_tmp(tmp.parent)   # the folders of saves killed before their rename
    return final
