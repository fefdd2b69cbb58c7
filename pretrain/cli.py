"""The pretraining command line (used by pretrain/main.py and ``python -m pretrain train``).

Exit status: 0 finished, or stopped on request with a checkpoint saved (``<output_dir>/finished.json``
exists only when finished), 2 config or data error (nothing ran), 3 non-finite loss (the last good
checkpoint is kept).
"""
from __future__ import annotations

from webtag.cli import run_training, setup_rank_logging


def main(argv: list[str] | None = None) -> int:
    setup_rank_logging()
    from pretrain.config import PretrainConfig
    from pretrain.data import DataError
    from pretrain.trainer import NonFiniteLoss, Trainer
    # DataError also comes from resuming a checkpoint of another model
    return run_training(argv, PretrainConfig, Trainer, "accelerate launch pretrain/main.py",
                        "YAML config (configs/pretrain/*.yaml)", __doc__,
                        input_errors=(DataError,), nonfinite_errors=(NonFiniteLoss,))
