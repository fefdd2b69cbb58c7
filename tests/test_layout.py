"""The test tree's own layout: test folders are not packages (pytest's rootdir-relative imports),
so every helper module is imported by its bare name, and a second ``conftest.py`` below tests/
would take the module name ``conftest`` from tests/conftest.py: every ``from conftest import ...``
collected after it fails. Shared fixtures of one folder live in a named module it imports."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_one_conftest_only():
    extra = sorted(str(p.relative_to(TESTS)) for p in TESTS.rglob("conftest.py") if p.parent != TESTS)
    assert not extra, f"a conftest.py below tests/ shadows tests/conftest.py: {extra}"


def test_helper_module_names_are_unique():
    names = Counter(p.name for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)
    dup = sorted(n for n, c in names.items() if c > 1)
    assert not dup, f"test modules share a name (they are imported by bare name): {dup}"


def test_a_session_fixture_is_imported_by_one_test_module_at_most():
    """A session fixture defined in a helper module and imported by two test modules is two
    fixtures, one per module: two moto servers, the second one's environment pointing the first
    one's cached clients at the wrong server (seen in CI). Shared session fixtures belong in
    tests/conftest.py."""
    defined = {}
    for p in TESTS.rglob("*.py"):
        if p.name == "conftest.py" or p.name == Path(__file__).name:
            continue
        text = p.read_text()
        for m in re.finditer(r'@pytest\.fixture\(scope="session"\)\s*\ndef (\w+)', text):
            defined[(p.stem, m.group(1))] = 0
    for p in TESTS.rglob("test_*.py"):
        for m in re.finditer(r"^from (\w+) import ([^\n]+)", p.read_text(), re.M):
            names = {n.strip() for n in m.group(2).split("#")[0].split(",")}
            for (mod, name) in defined:
                if m.group(1) == mod and name in names:
                    defined[(mod, name)] += 1
    shared = sorted(f"{mod}.{name}" for (mod, name), n in defined.items() if n > 1)
    assert not shared, f"session fixtures imported by several test modules (move them to tests/conftest.py): {shared}"
