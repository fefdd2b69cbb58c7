"""The pretraining command line (used by pretrain/main.py and ``python -m pretrain train``).

Exit status: 0 finished, or stopped on request with a checkpoint saved (``<output_dir>/finished.json``
exists only when finished), 2 config or data error (nothing ran), 3 non-finite loss (the last good
checkpoint is kept).
"""
from __future__ import annotations

import argparse
import logging
import os

def setup_rank_logging() -> None:
    """INFO on rank 0 (or $WEBTAG_LOG); other ranks only warnings (or $WEBTAG_LOG_OTHER_RANKS)."""
    from webtag.logs import setup_logging
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(None if rank == 0 else os.environ.get("WEBTAG_LOG_OTHER_RANKS", "WARNING"))


def run_training(argv: list[str] | None, config_cls, trainer_cls, prog: str, config_help: str,
                 input_errors: tuple = ()) -> int:
    """Parse ``--config`` and ``key=value`` overrides, build the trainer, fit. Config and data
    errors (and ``input_errors``) exit 2 with the message, a non-finite loss exits 3."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help=config_help)
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. optim.lr=0.2 train.epochs=90")
    args = ap.parse_args(argv)
    from pretrain.data import DataError
    from pretrain.trainer import NonFiniteLoss
    from webtag.config import ConfigError, load_config
    log = logging.getLogger(prog.rsplit(" ", 1)[-1].split("/")[0])   # pretrain / finetune
    try:
        trainer_cls(load_config(config_cls, args.config, args.overrides)).fit()
    except (ConfigError, DataError, *input_errors) as exc:   # DataError also from resuming another model
        log.error("%s", exc)
        return 2
    except NonFiniteLoss as exc:
        log.error("%s", exc)
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    setup_rank_logging()
    from pretrain.config import PretrainConfig
    from pretrain.trainer import Trainer
    return run_training(argv, PretrainConfig, Trainer, "accelerate launch pretrain/main.py",
                        "YAML config (configs/pretrain/*.yaml)")
