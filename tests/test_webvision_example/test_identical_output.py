"""The generator writes the very bytes the old ``pipeline.example`` wrote.

``data/c3i4-v*.sha256`` (sha256sum format) and ``data/c3i4-v*.summary.json`` were made by
``pipeline.example.make_example(out, classes=3, images_per_class=4)`` before it moved to
``webvision_example``, and made again (same command, same hashing as ``written_hashes``) when the
example's text changed on purpose (per-class planted noise, ``webvision_example/text.py``). Only
the README's first line names the new command. The JPEGs' bytes also depend on NumPy's generators and Pillow's encoder: after
upgrading those, a mismatch limited to ``*.jpg`` files points there rather than at this package.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from webvision_example import make_example

DATA = Path(__file__).resolve().parent / "data"
OLD_LINE = b"Generated WebVision-format example (webtag: python -m pipeline example).\n"
NEW_LINE = b"Generated WebVision-format example (webtag: python -m webvision_example).\n"


def expected_hashes(version: str) -> dict[str, str]:
    rows = (DATA / f"c3i4-v{version}.sha256").read_text(encoding="utf-8").splitlines()
    return {path: digest for digest, path in (row.split("  ", 1) for row in rows)}


def written_hashes(root: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path == root / "README.txt":
            assert data.startswith(NEW_LINE)
            data = OLD_LINE + data[len(NEW_LINE):]  # the one line that names the command
        hashes[path.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return hashes


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_same_bytes_as_before_the_move(version, tmp_path):
    out = tmp_path / "release"
    summary = make_example(out, classes=3, images_per_class=4, version=version)
    expected, got = expected_hashes(version), written_hashes(out)
    assert sorted(got) == sorted(expected), "other files than before"
    differ = sorted(path for path in expected if got[path] != expected[path])
    assert not differ, f"other bytes than before in {differ}"
    old_summary = json.loads((DATA / f"c3i4-v{version}.summary.json").read_text(encoding="utf-8"))
    assert json.loads(json.dumps(summary).replace(str(out), "<OUT>")) == old_summary
