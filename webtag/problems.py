"""Accounting of bad input: every problem is counted by kind with the offending file named.

With ``on_error="fail"`` the first problem raises :class:`InputError` instead, with a message that
names the file and the record (line or row). Each stage defines its kinds (name -> meaning) and
which of them concern a whole file (counted once per file, however many parts meet it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

MAX_EXAMPLES = 20


class InputError(RuntimeError):
    """Bad input met with ``on_error="fail"``."""


@dataclass
class Problems:
    kinds: dict[str, str]
    file_kinds: frozenset = frozenset()
    on_error: str = "skip"
    counts: dict[str, int] = field(default_factory=dict)
    files: dict[str, dict[str, int]] = field(default_factory=dict)   # kind -> file -> count
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, file: str, where: str | int | None, message: str, count: int = 1) -> None:
        if kind not in self.kinds:
            raise KeyError(kind)
        loc = f"{file}:{where}" if where not in (None, "") else str(file)
        if self.on_error == "fail":
            raise InputError(f"{loc}: {message} [{kind}] (run with --on-error skip to count and go on)")
        per_file = self.files.setdefault(kind, {})
        if kind in self.file_kinds:
            if str(file) in per_file:
                return
            count = 1
        self.counts[kind] = self.counts.get(kind, 0) + count
        per_file[str(file)] = per_file.get(str(file), 0) + count
        ex = self.examples.setdefault(kind, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(f"{loc}: {message}")

    def merge(self, other: "Problems | dict") -> None:
        data = other.to_dict() if isinstance(other, Problems) else other
        for kind, n in data.get("counts", {}).items():
            self.counts[kind] = self.counts.get(kind, 0) + n
        for kind, per_file in data.get("files", {}).items():
            mine = self.files.setdefault(kind, {})
            for f, n in per_file.items():
                mine[f] = 1 if kind in self.file_kinds else mine.get(f, 0) + n
            if kind in self.file_kinds:
                self.counts[kind] = len(mine)
        for kind, ex in data.get("examples", {}).items():
            mine = self.examples.setdefault(kind, [])
            for e in ex:
                if len(mine) < MAX_EXAMPLES and e not in mine:
                    mine.append(e)

    def to_dict(self) -> dict:
        order = [k for k in self.kinds if k in self.counts]
        return {
            "counts": {k: self.counts[k] for k in order},
            "files": {k: dict(sorted(self.files[k].items())) for k in order},
            "examples": {k: self.examples.get(k, []) for k in order},
        }

    def total(self) -> int:
        return sum(self.counts.values())
