"""The project's documentation lives in the repository (docs/).

- No project file cites notes that sit outside the repository (the old ``shared`` notes, which
  users of the project never receive).
- Every ``docs/<name>.md`` cited anywhere in the project exists, and a cited section
  (``docs/methods.md, "ML-GCN"``) is a heading of that file.
- Relative links in README.md and docs/*.md point at files that exist.

The files checked are the tracked ones plus the untracked files git does not ignore.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# spelt in pieces so that this file does not match itself
FORBIDDEN = ("shared" + "/docs", ".." + "/shared")
DOC_PATH = re.compile(r"(?<![\w./-])docs/([\w.-]+\.md)")
DOC_SECTION = re.compile(r"(?<![\w./-])docs/([\w.-]+\.md),? \"([^\"]+)\"")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def project_files() -> list[Path]:
    try:
        tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        others = subprocess.run(["git", "ls-files", "-z", "--others", "--exclude-standard"], cwd=REPO,
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot list the project's files")
    names = sorted({n for n in (tracked + others).decode("utf-8", "surrogateescape").split("\0") if n})
    return [REPO / n for n in names if (REPO / n).is_file()]   # tracked but deleted here: skipped


def read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\0" in data[:8192]:     # binary
        return ""
    return data.decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def texts() -> dict[Path, str]:
    out = {p: read_text(p) for p in project_files()}
    assert out, "git listed no files"
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_nothing_cites_notes_outside_the_repository(texts):
    hits = [f"{_rel(p)}:{i}: {line.strip()}"
            for p, text in texts.items()
            for i, line in enumerate(text.splitlines(), 1)
            if any(f in line for f in FORBIDDEN)]
    assert not hits, "cite docs/ instead:\n" + "\n".join(hits)


def test_cited_docs_exist(texts):
    cited: dict[str, list[str]] = {}
    for p, text in texts.items():
        for name in {m.group(1) for m in DOC_PATH.finditer(text)}:
            cited.setdefault(name, []).append(_rel(p))
    this = _rel(Path(__file__).resolve())
    assert any(set(where) - {this} for where in cited.values()), \
        "no project file cites docs/<name>.md: is this test still looking at the right files?"
    missing = [f"docs/{name} (cited in {', '.join(sorted(where))})" for name, where in sorted(cited.items())
               if not (REPO / "docs" / name).is_file()]
    assert not missing, "\n".join(missing)


def _headings(path: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("#")]


def test_cited_sections_exist(texts):
    bad = []
    for p, text in texts.items():
        for m in DOC_SECTION.finditer(text):
            doc = REPO / "docs" / m.group(1)
            if doc.is_file() and not any(m.group(2) in h for h in _headings(doc)):
                bad.append(f"{_rel(p)}: docs/{m.group(1)} has no section {m.group(2)!r}")
    assert not bad, "\n".join(bad)


def test_relative_links_in_the_documentation_resolve(texts):
    bad = []
    for p, text in texts.items():
        rel = _rel(p)
        if not (rel == "README.md" or (rel.startswith("docs/") and rel.endswith(".md"))):
            continue
        for m in MD_LINK.finditer(text):
            target = m.group(1).split("#", 1)[0]
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):   # anchors, URLs
                continue
            if not (p.parent / target).exists():
                bad.append(f"{rel}: link to {m.group(1)} does not resolve")
    assert not bad, "\n".join(bad)
