"""Command-line plumbing shared by the training stages (pretrain, finetune).

- ``setup_rank_logging``: console logging for one process of a multi-process run;
- ``run_training``: ``--config YAML [key=value ...]`` -> config -> trainer -> ``fit()`` (``--help``
  lists every config key with its type, default and description; ``--print-config`` prints the
  resolved config and exits), with the
  exit statuses every training command has: 0 done, 2 bad input (a config error, or one of the
  stage's ``input_errors``: nothing ran), 3 the stage's ``nonfinite_errors`` (training diverged).

The stages pass their config and trainer classes and their exceptions; this module imports no
stage.
"""
from __future__ import annotations

import argparse
import logging
import os

from webtag.config import ConfigError, dump_config, load_config
from webtag.config_help import format_keys
from webtag.logs import setup_logging

EXIT_OK, EXIT_BAD_INPUT, EXIT_NONFINITE = 0, 2, 3


def setup_rank_logging() -> None:
    """INFO on rank 0 (or $WEBTAG_LOG); other ranks only warnings (or $WEBTAG_LOG_OTHER_RANKS)."""
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(None if rank == 0 else os.environ.get("WEBTAG_LOG_OTHER_RANKS", "WARNING"))


def run_training(argv: list[str] | None, config_cls, trainer_cls, prog: str, config_help: str, description: str,
                 input_errors: tuple[type[BaseException], ...] = (),
                 nonfinite_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Parse ``--config`` and ``key=value`` overrides, build ``trainer_cls(config)``, ``fit()``.
    A ConfigError or one of ``input_errors`` exits 2 with its message, one of ``nonfinite_errors``
    exits 3; the logger is the stage's (``pretrain`` / ``finetune``, from ``prog``)."""
    ap = argparse.ArgumentParser(prog=prog, description=description, epilog=format_keys(config_cls),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help=config_help)
    ap.add_argument("--print-config", action="store_true",
                    help="print the resolved config (the YAML file, then the overrides) and exit")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. optim.lr=0.2 train.epochs=90")
    args = ap.parse_args(argv)
    log = logging.getLogger(prog.rsplit(" ", 1)[-1].split("/")[0])   # pretrain / finetune
    try:
        cfg = load_config(config_cls, args.config, args.overrides)
        if args.print_config:
            print(dump_config(cfg), end="")
            return EXIT_OK
        trainer_cls(cfg).fit()
    except (ConfigError, *input_errors) as exc:
        log.error("%s", exc)
        return EXIT_BAD_INPUT
    except nonfinite_errors as exc:
        log.error("%s", exc)
        return EXIT_NONFINITE
    return EXIT_OK


def os_error_line(exc: OSError, where) -> str:
    """The one line a command prints for an OSError writing its output (read-only or full ``--out``).

    Some writers report a full disk as a short write without an errno (pyarrow: "3040 requested
    and 2016 written"); that is said as what it is."""
    reason = exc.strerror
    if reason is None:
        text = str(exc)
        reason = f"No space left on device ({text})" if " requested and " in text and " written" in text else text
    return f"error: {exc.filename or where}: {reason}"
