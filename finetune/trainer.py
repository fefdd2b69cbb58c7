"""Finetuning on the pretraining engine: the same trainer (loader, Accelerate, checkpoints,
resume, logs), with the weights initialised from a pretrained backbone and a new head, the
(web or pseudo) class label as target, evaluation on the validation shards, and the best model
by top-1 kept in ``<output_dir>/best/``."""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from pipeline.schema import SIZES_FILE
from pretrain.data import DataError
from pretrain.model import MODEL_INFO, read_model_info, save_model
from pretrain.trainer import Trainer

from webtag.remote_copy import local_model
from webtag.storage import is_url, location

from .config import FinetuneConfig
from .init import load_backbone, load_whole
from .metrics import ClassificationMeter

log = logging.getLogger(__name__)
BEST = "best"


class FinetuneTrainer(Trainer):
    def __init__(self, cfg: FinetuneConfig):
        if cfg.init and cfg.continue_from:   # e.g. a config with init, continued at a larger size
            log.warning("continue_from=%s: the finetuned model is loaded; init=%s is not used",
                        cfg.continue_from, cfg.init)
            cfg = replace(cfg, init="")
        if cfg.continue_from and cfg.optim.schedule_offset == 0:   # the LR continues where that run ended
            cfg = replace(cfg, optim=replace(cfg.optim, schedule_offset=continued_schedule_offset(cfg.continue_from)))
        self.eval_dir = location(cfg.data.shards) / cfg.eval_split   # local, a URL or a pipe: (webtag.storage)
        if not (self.eval_dir / SIZES_FILE).is_file():
            raise DataError(f"{self.eval_dir / SIZES_FILE} does not exist: eval_split={cfg.eval_split!r} "
                            f"is not a shard split of {cfg.data.shards}")
        self.best_top1 = -1.0
        super().__init__(cfg)

    def _start(self) -> None:
        super()._start()   # resumed (a run folder at a URL: its best/ is in the stage now)
        best = read_model_info(self.out / BEST)
        if best is not None:   # a resumed run keeps comparing against its best so far
            self.best_top1 = float(best.get("val_top1", -1.0))

    def init_model(self, model: torch.nn.Module) -> None:
        cfg = self.cfg
        if cfg.continue_from:
            info = load_whole(model, cfg.continue_from)
            log.info("continuing %s (step %s, %s px) at %d px, LR schedule from step %d",
                     cfg.continue_from, info.get("step"), info.get("image_size"), cfg.loader.image_size,
                     cfg.optim.schedule_offset)
        elif cfg.init:
            info = load_backbone(model, cfg.init)
            log.info("initialised from %s (pretrained %s on %s), new %d-way head", cfg.init, info.get("model"),
                     info.get("target"), self.info.num_outputs)
        else:
            log.warning("no init: finetuning starts from random weights (the paper's 'without pretraining')")

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        from accelerate.utils import gather_object

        loader, shared = self.eval_loader(self.eval_dir)
        meter = ClassificationMeter(self.info.num_outputs)
        if loader is not None:
            for (logits,), batch, keep in self.eval_outputs(loader):
                meter.update(logits, batch["class_id"][keep])
        if shared:   # every rank read its share of the shards: sum the counts
            merged = ClassificationMeter(self.info.num_outputs)
            for part in gather_object([meter]):
                merged.merge(part)
            meter = merged
        result = meter.result()
        self.last_eval = result
        if self.is_main:   # the per-class table of the latest evaluation, beside metrics.csv
            from .per_class import class_table, write_per_class
            write_per_class(self.out / f"{self.cfg.eval_split}-per-class.csv", meter.per_class(),
                            class_table(self.info.labels_dir, self.info.num_outputs))
        return {"val_top1": result["top1"], "val_top5": result["top5"], "val_mean_class_acc": result["mean_class_acc"],
                "val_top1_balanced": result["top1_balanced"], "val_top5_balanced": result["top5_balanced"],
                "val_classes_evaluated": result["classes_evaluated"]}

    def on_evaluated(self, metrics: dict) -> None:
        top1 = metrics.get("val_top1")
        if top1 is None or not self.cfg.keep_best or top1 <= self.best_top1:
            return
        self.best_top1 = top1
        if self.is_main:
            save_model(self.bare_model(), self.out / BEST, {**self.model_info(), **metrics})
            log.info("best so far: val top-1 %.4f at step %d -> %s", top1, self.step, self.out / BEST)

    def model_info(self) -> dict:
        info = super().model_info()
        if getattr(self, "last_eval", None):
            info.update(val_top1=self.last_eval["top1"], val_top5=self.last_eval["top5"],
                        val_top1_balanced=self.last_eval["top1_balanced"],
                        val_top5_balanced=self.last_eval["top5_balanced"])
        return info


def continued_schedule_offset(path: str | Path) -> int:
    """The LR-schedule offset of ``continue_from=path``: the last step of the run the model comes
    from. A run's ``best/`` was saved at an earlier step; its run folder's model.json holds the last
    one (a ``best/`` without its run keeps its own step). A URL: its model.json files are fetched."""
    if is_url(path):
        url = str(path).rstrip("/")
        folder_url = url.rsplit("/", 1)[0] if url.endswith(".safetensors") else url
        info = _model_json(_fetched(folder_url), folder_url)
        parent = _fetched(folder_url.rsplit("/", 1)[0]) if folder_url.endswith("/" + BEST) else None
        run = read_model_info(parent) if parent is not None else None
        return int((run or info).get("step", 0))
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    info = _model_json(folder)
    if folder.name == BEST:
        run = read_model_info(folder.parent)
        if run is not None:
            return int(run.get("step", 0))
        log.warning("continue_from=%s: no model.json in %s, the LR continues from the best step %s",
                    path, folder.parent, info.get("step", 0))
    return int(info.get("step", 0))


def _fetched(url: str) -> Path | None:
    """The local copy of the model.json at folder ``url``, or None when there is none."""
    try:
        return local_model(url, (MODEL_INFO,))
    except FileNotFoundError:
        return None


def _model_json(path: str | Path | None, shown: str | None = None) -> dict:
    info = read_model_info(path) if path is not None else None
    if info is None:
        raise DataError(f"continue_from={shown or path}: no {MODEL_INFO} there (a finished finetuning run or its best/)")
    return info
