"""The example's training images as the release's tar archives (``webvision_train_XX.tar``, as
WebVision 2.0 ships them) instead of folders: the written files are packed, in list order, into
``n`` archives of about equal counts (members named by their list paths, fixed owner and mtime:
the same arguments give byte-identical archives), then removed with their emptied folders."""
from __future__ import annotations

import shutil
import tarfile
from pathlib import Path


def pack_train_archives(root: Path, train: list[str], n: int) -> list[Path]:
    """Move the images of the ``train`` list lines (``<path> <class id>``) under ``root`` into
    ``n`` tar archives at the top of ``root``; returns their paths."""
    paths = [line.rsplit(" ", 1)[0] for line in train]
    n = max(1, min(n, len(paths) or 1))
    archives = []
    for i in range(n):
        archive = root / f"webvision_train_{i:02d}.tar"
        with tarfile.open(archive, "w", format=tarfile.USTAR_FORMAT) as tf:
            for rel in paths[i * len(paths) // n:(i + 1) * len(paths) // n]:
                data = (root / rel).read_bytes()
                info = tarfile.TarInfo(rel)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                with open(root / rel, "rb") as f:
                    tf.addfile(info, f)
        archives.append(archive)
    for top in sorted({p.split("/", 1)[0] for p in paths}):
        shutil.rmtree(root / top)
    return archives
