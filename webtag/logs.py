"""Logging for webtag's command lines: the console (``setup_logging``) and a run's log file
(``attach_run_log``: ``<run folder>/train.log``, rank 0's info and every rank's warnings and
errors, each line naming its rank)."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

RUN_LOG = "train.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | int | None = None) -> None:
    level = level or os.environ.get("WEBTAG_LOG", "INFO")
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=_FORMAT,
        datefmt="%H:%M:%S",
        force=True,
    )
    # third-party libraries that log every epoch or file at INFO
    for name in ("gensim", "matplotlib", "smart_open", "PIL", "accelerate"):
        logging.getLogger(name).setLevel(logging.WARNING)


class _RunLog(logging.FileHandler):
    """The handler of a run's log file (one per process; a new run's replaces it)."""


def attach_run_log(folder: str | Path, rank: int | None = None) -> Path:
    """Append this process's records to ``folder/train.log``: INFO and above on rank 0, WARNING
    and above on the other ranks (every rank appends to the one file). Replaces the run log of an
    earlier run in this process. The loggers' own levels still apply (webtag's are INFO)."""
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RunLog)]:
        root.removeHandler(old)
        old.close()
    path = Path(folder) / RUN_LOG
    handler = _RunLog(path, mode="a", encoding="utf-8")
    handler.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    handler.setFormatter(logging.Formatter(f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if root.level > logging.INFO and rank == 0:   # e.g. WEBTAG_LOG=WARNING on the console: the file keeps info
        for h in root.handlers:
            if not isinstance(h, _RunLog) and h.level == logging.NOTSET:
                h.setLevel(root.level)
        root.setLevel(logging.INFO)
    return path
