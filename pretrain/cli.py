"""The pretraining command line (used by pretrain/main.py and ``python -m pretrain train``).

Exit status: 0 finished, or stopped on request with a checkpoint saved (``<output_dir>/finished.json``
exists only when finished), 2 config or data error (nothing ran), 3 non-finite loss (the last good
checkpoint is kept).
"""
from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger("pretrain")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="accelerate launch pretrain/main.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML config (configs/pretrain/*.yaml)")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. optim.lr=0.2 train.epochs=90")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from webtag.logs import setup_logging
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(None if rank == 0 else os.environ.get("WEBTAG_LOG_OTHER_RANKS", "WARNING"))
    from webtag.config import ConfigError, load_config
    from pretrain.config import PretrainConfig
    from pretrain.data import DataError
    from pretrain.trainer import NonFiniteLoss, Trainer
    try:
        cfg = load_config(PretrainConfig, args.config, args.overrides)
        trainer = Trainer(cfg)
    except (ConfigError, DataError) as exc:
        log.error("%s", exc)
        return 2
    try:
        trainer.fit()
    except DataError as exc:   # e.g. resuming a checkpoint of another model
        log.error("%s", exc)
        return 2
    except NonFiniteLoss as exc:
        log.error("%s", exc)
        return 3
    return 0

