"""Experiment trackers through Accelerate (``train.log_with``: wandb, mlflow, aim, tensorboard, ...).

The trainer passes :func:`accelerator_kwargs` to its ``Accelerator``, calls :func:`start` once the
run folder exists (the resolved config, flattened to ``section.key``, is logged as the run's
hyperparameters) and logs every metrics row with ``accelerator.log``; ``end_training`` closes
them. The trackers log beside ``metrics.csv`` (always written) and the TensorBoard files of
``train.tensorboard`` (on by default). Where a tracker keeps its data is its own setting:
``WANDB_MODE=offline`` / ``WANDB_DIR`` for Weights & Biases (default ``<output_dir>/wandb``),
``MLFLOW_TRACKING_URI`` for MLflow (e.g. ``file:./mlruns``, with ``MLFLOW_ALLOW_FILE_STORE=true`` on
MLflow 3), ``<output_dir>`` for aim.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from webtag.config import ConfigError, to_dict

# tracker -> the module it needs, and the pip extra of webtag that installs it
_MODULES = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow"), "aim": ("aim", "aim"),
            "tensorboard": ("tensorboard", None), "comet_ml": ("comet_ml", None), "clearml": ("clearml", None),
            "dvclive": ("dvclive", None), "swanlab": ("swanlab", None), "trackio": ("trackio", None)}


def check(names: list[str]) -> None:
    """Refuse an unknown tracker or one whose package is not installed, naming the key."""
    for name in names:
        if name not in _MODULES:
            raise ConfigError(f"train.log_with: unknown tracker {name!r}; known: {', '.join(sorted(_MODULES))}")
        module, extra = _MODULES[name]
        if importlib.util.find_spec(module) is None:
            how = f"pip install 'webtag[{extra}]'" if extra else f"pip install {module}"
            raise ConfigError(f"train.log_with: {name} is not installed ({how})")


def accelerator_kwargs(names: list[str], output_dir: str | Path) -> dict:
    """What the trainer's ``Accelerator(...)`` gets for ``train.log_with``."""
    if not names:
        return {}
    check(names)
    return {"log_with": list(names), "project_dir": str(output_dir)}


def hyperparameters(cfg: Any) -> dict[str, Any]:
    """The config as one flat mapping ``section.key -> value`` (lists as text), what every tracker takes."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            key = prefix[:-1]
            flat[key] = str(node) if isinstance(node, (list, tuple)) else ("" if node is None else node)
    walk(to_dict(cfg), "")
    return flat


def metric_names(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics row with names every tracker accepts (MLflow refuses ``@``: ``holdout_p@1`` ->
    ``holdout_p_at_1``); ``metrics.csv`` keeps the original names."""
    return {k.replace("@", "_at_"): v for k, v in row.items()}


def start(accelerator, names: list[str], project: str, output_dir: str | Path, cfg: Any) -> None:
    """Start the trackers of ``train.log_with`` (every rank calls it; they run on the main process),
    with the run folder's name as the run's name and the resolved config as its hyperparameters."""
    if not names:
        return
    out = Path(output_dir)
    run = out.resolve().name
    import os
    wandb_dir = os.environ.get("WANDB_DIR")   # the user's WANDB_DIR wins over the run folder
    init = {"wandb": {"name": run, "dir": wandb_dir or str(out)}, "mlflow": {"run_name": run}}
    if "wandb" in names and accelerator.is_main_process and not wandb_dir:
        (out / "wandb").mkdir(parents=True, exist_ok=True)
    accelerator.init_trackers(project, config=hyperparameters(cfg),
                              init_kwargs={k: v for k, v in init.items() if k in names})
