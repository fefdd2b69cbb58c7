"""Console logging for webtag's command lines."""
from __future__ import annotations

import logging
import os
import sys


def setup_logging(level: str | int | None = None) -> None:
    level = level or os.environ.get("WEBTAG_LOG", "INFO")
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    # third-party libraries that log every epoch or file at INFO
    for name in ("gensim", "matplotlib", "smart_open", "PIL", "accelerate"):
        logging.getLogger(name).setLevel(logging.WARNING)
