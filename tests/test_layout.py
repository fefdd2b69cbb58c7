"""The test tree's own layout: test folders are not packages (pytest's rootdir-relative imports),
so every helper module is imported by its bare name, and a second ``conftest.py`` below tests/
would take the module name ``conftest`` from tests/conftest.py: every ``from conftest import ...``
collected after it fails. Shared fixtures of one folder live in a named module it imports."""
from __future__ import annotations

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
