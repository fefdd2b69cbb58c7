"""webvision_example is demo and test tooling: the production packages never use it, and it ships
its word tables."""
from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = ("webtag", "text_mining", "pipeline", "pretrain", "finetune")
NAME = re.compile(r"webvision_example(\.\w+)*")


def uses_of_example(path: Path) -> list[str]:
    """Imports of webvision_example, and strings that name it as a module (import_module,
    ``python -m``), in one source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        else:
            continue
        found += [f"{path.relative_to(REPO)}:{node.lineno}" for name in names if NAME.fullmatch(name)]
    return found


def test_production_packages_do_not_import_the_example():
    sources = [p for package in PRODUCTION for p in sorted((REPO / package).rglob("*.py"))]
    assert len(sources) > 20
    assert [use for path in sources for use in uses_of_example(path)] == []


def test_package_and_word_tables_are_shipped():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "webvision_example*" in setuptools["packages"]["find"]["include"]
    globs = setuptools["package-data"]["webvision_example"]
    package = REPO / "webvision_example"
    shipped = {p for pattern in globs for p in package.glob(pattern)}
    tables = set((package / "words").glob("*.json"))
    assert tables and tables <= shipped
