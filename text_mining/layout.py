"""Where each step of the stage writes inside the output folder.

    OUT/_work/config.yaml                  the config every step of this output must share
    OUT/_work/count/part-00000-of-00004/   per part: extract.parquet, counts.parquet, report.json
    OUT/_work/vocabulary/                  the reduce step's outputs (tables, word vectors, KNN set)
    OUT/_work/tag/part-00000-of-00004/     per part: images.parquet, report.json
    OUT/images.parquet ... report.json     the merged, public outputs (see schema.py)

A part is done when its folder exists: it is written under a hidden name and renamed.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

from webtag.atomic import remove_stale_tmp, write_text_atomic
from webtag.config import dump_config

from .config import ReduceConfig, TextMiningConfig

log = logging.getLogger(__name__)
PART_RE = re.compile(r"^part-(\d{5})-of-(\d{5})$")


class OutputMismatch(RuntimeError):
    """Steps of one output folder run with different configs or part counts."""


class Layout:
    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.work = self.out / "_work"

    def part_dir(self, step: str, part: int, num_parts: int) -> Path:
        return self.work / step / f"part-{part:05d}-of-{num_parts:05d}"

    def finished_part(self, step: str, part: int, num_parts: int) -> dict | None:
        """The report of a finished part (rerunning it is a no-op), or None."""
        dest = self.part_dir(step, part, num_parts)
        if not dest.exists():
            return None
        log.info("%s part %d/%d already done (%s)", step, part, num_parts, dest)
        return json.loads((dest / "report.json").read_text())

    @property
    def vocabulary_dir(self) -> Path:
        return self.work / "vocabulary"

    def done_parts(self, step: str) -> tuple[int | None, list[Path]]:
        """(num_parts, finished part folders in order) of a map step; checks consistency."""
        folder = self.work / step
        if not folder.is_dir():
            return None, []
        found = {}
        for entry in folder.iterdir():
            m = PART_RE.match(entry.name)
            if m and entry.is_dir():
                found.setdefault(int(m.group(2)), []).append((int(m.group(1)), entry))
        if not found:
            return None, []
        if len(found) > 1:
            raise OutputMismatch(f"{folder} holds parts of different part counts "
                                 f"({sorted(found)}): remove the stale ones")
        (n, parts), = found.items()
        return n, [p for _, p in sorted(parts)]

    def require_all(self, step: str, what_next: str) -> tuple[int, list[Path]]:
        n, parts = self.done_parts(step)
        if n is None:
            raise OutputMismatch(f"no finished '{step}' parts in {self.work / step}: run "
                                 f"`python -m text_mining {step}` for every part before {what_next}")
        if len(parts) != n:
            done = {int(PART_RE.match(p.name).group(1)) for p in parts}
            missing = [i for i in range(n) if i not in done]
            raise OutputMismatch(f"'{step}' parts {missing} of {n} are not finished in "
                                 f"{self.work / step}; run them before {what_next}")
        return n, parts

    def prepare(self, step: str | None = None) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        if step:
            (self.work / step).mkdir(parents=True, exist_ok=True)
            remove_stale_tmp(self.work / step)
        remove_stale_tmp(self.work)
        remove_stale_tmp(self.out)

    def check_config(self, cfg: TextMiningConfig) -> None:
        """The first step records the config; later steps must use the same one."""
        # on_error does not change what a finished part holds (a part that met bad input under
        # "fail" wrote nothing), so parts may be rerun with the other setting; nor does the memory
        # bound (reduce.memory_mb: the outputs are the same in memory and out of core)
        text = dump_config(dataclasses.replace(cfg, reader=dataclasses.replace(cfg.reader, on_error="skip"),
                                               reduce=ReduceConfig()))
        path = self.work / "config.yaml"
        self.work.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            write_text_atomic(path, text)
            return
        recorded = path.read_text(encoding="utf-8")
        if recorded != text:
            import difflib
            diff = "\n".join(difflib.unified_diff(recorded.splitlines(), text.splitlines(),
                                                  "recorded", "now", lineterm="", n=0))
            raise OutputMismatch(
                f"{self.out} was started with a different config ({path}):\n{diff}\n"
                "Use the same config and overrides for every step, or a new --out folder.")
