"""The training engine: WT-Set / LW-Set pretraining (and, subclassed, finetuning) under Accelerate.

One process per device (``accelerate launch``); each builds its own
:class:`pipeline.loader.ShardLoader` for its rank (never passed to ``accelerator.prepare``:
Accelerate would re-split an IterableDataset by reading everything on every rank).

:class:`Trainer` builds the parts from a :class:`PretrainConfig` and :meth:`Trainer.fit` is the
loop; the parts do the work:

    model         pretrain.model.build_full_model    timm model, pooling, linear / ML-GCN / SRN head
    criterion     pretrain.criterion                 the loss (MultiGrain's joint loss included)
    batches       pipeline.loader.DevicePrefetcher   batches on the device, one step ahead on CUDA
    window        pretrain.progress.MetricsWindow    loss / images/s / data wait between log points
    due           pretrain.progress.Due              what a step must do: log, evaluate, checkpoint
    agreement     pretrain.control                   stop requests, NaN/inf: all ranks agree
    evaluation    pretrain.evaluation                the one evaluation loop (held-out loss, p@k)
    checkpoints   pretrain.checkpointer              save / resume (loader position included)
    mirror        pretrain.run_mirror                a run folder at a URL: staged locally, uploaded
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import torch

from pipeline.loader import DevicePrefetcher, GpuAugment, ShardLoader
from webtag.atomic import write_text_atomic
from webtag.config import ConfigError, dump_config
from webtag import trackers
from webtag.logs import attach_run_log
from webtag.remote_copy import local_model

from . import checkpoint as ckpt
from . import run_mirror
from .checkpointer import Checkpointer, ShardAudit
from .config import PretrainConfig
from .control import NonFiniteLoss, StepStopCheck, StopRequest, agree
from .criterion import build_criterion
from .data import DataError, DataInfo, inspect_data
from .evaluation import eval_loader, model_outputs
from .losses import batch_targets, check_ids, target_ids_key
from .metrics import MetricsLog, precision_at_k
from .model import BACKBONE_WEIGHTS, MODEL_INFO, MODEL_WEIGHTS, build_full_model, load_whole_model, save_backbone, save_model
from .optim import build_ema, build_optimizer, build_scheduler
from .progress import Due, MetricsWindow, Report

log = logging.getLogger(__name__)
FINISHED = "finished.json"
__all__ = ["FINISHED", "NonFiniteLoss", "Trainer", "accumulation_steps"]


def accumulation_steps(tc, per_device_batch: int, processes: int) -> int:
    """Micro-batches per optimizer step: ``train.grad_accum``, or, with ``train.effective_batch``,
    what keeps effective_batch = per-device batch x processes x steps on this number of devices."""
    if tc.effective_batch is None:
        if tc.grad_accum < 1:
            raise ConfigError(f"train.grad_accum={tc.grad_accum}: must be >= 1")
        return tc.grad_accum
    per_step = per_device_batch * processes
    if tc.effective_batch < per_step or tc.effective_batch % per_step:
        raise ConfigError(f"train.effective_batch={tc.effective_batch} is not a multiple of loader.batch_size "
                          f"{per_device_batch} x {processes} processes = {per_step}: change loader.batch_size")
    return tc.effective_batch // per_step


class Trainer:
    """``step`` counts optimizer steps; an epoch is one pass of the loader over the training shards.
    The run lasts ``train.max_steps`` optimizer steps, else ``epochs x steps per epoch``; a resumed
    run ends at the same step as an uninterrupted one."""

    def __init__(self, cfg: PretrainConfig):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.cfg, tc = cfg, cfg.train
        self.info: DataInfo = inspect_data(cfg.data, cfg.model)   # refuse a mismatch before anything runs
        # the process count before Accelerate starts (creating its state early would pin it to
        # the defaults); checked against Accelerate's below
        world = int(os.environ.get("WORLD_SIZE", "1"))
        # where the run is written: output_dir, or for a URL its local stage (pretrain.run_mirror)
        self.out, self.mirror = run_mirror.run_folder(tc.output_dir, tc.stage_dir)
        self.grad_accum = accumulation_steps(tc, cfg.loader.batch_size, world)
        self.accelerator = acc = Accelerator(mixed_precision=tc.mixed_precision,
                                             gradient_accumulation_steps=self.grad_accum,
                                             step_scheduler_with_optimizer=False,
                                             **trackers.accelerator_kwargs(tc.log_with, self.out))
        if acc.num_processes != world:
            raise ConfigError(f"Accelerate runs {acc.num_processes} processes but WORLD_SIZE is {world}")
        self.device = acc.device
        set_seed(tc.seed)
        model = build_full_model(cfg.model, self.info.labels_dir, cfg.data.target, self.info.num_outputs)
        if cfg.model.init_weights:
            try:   # a URL: its local copy (not there, unreadable, no backend: one line, exit 2)
                weights = local_model(cfg.model.init_weights, (MODEL_WEIGHTS, MODEL_INFO))
            except (OSError, ValueError) as exc:
                raise DataError(f"model.init_weights={cfg.model.init_weights}: {exc}") from None
            load_whole_model(model, weights)
        self.init_model(model)
        if cfg.model.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.loader = ShardLoader(self.info.train_dir, cfg.loader, rank=acc.process_index,
                                  world_size=acc.num_processes, num_keywords=self.info.num_keywords,
                                  shards=self.info.train_shards)
        self.micro_per_epoch = len(self.loader)
        self.steps_per_epoch = max(1, self.micro_per_epoch // self.grad_accum)
        self.total_steps = tc.max_steps or max(1, (tc.epochs * self.micro_per_epoch) // self.grad_accum)
        self.criterion = build_criterion(cfg.loss, model, cfg.loader, cfg.data.target, self.info.num_classes,
                                         cfg.model.head).to(self.device)
        optimizer = build_optimizer(model, cfg.optim, list(self.criterion.parameters()))
        self.scheduler = build_scheduler(optimizer, cfg.optim, self.total_steps, self.steps_per_epoch)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        # what a checkpoint holds beside the trainer state (pretrain.checkpointer; no pickle)
        checkpointed = {"model": self.bare_model(), "optimizer": self.optimizer, "scheduler": self.scheduler}
        for i, part in enumerate(self.criterion.checkpointed()):
            checkpointed[f"criterion-{i}"] = part
        self.ema = build_ema(self.bare_model(), cfg.optim.ema_decay) if cfg.optim.ema_decay else None
        if self.ema is not None:
            checkpointed["ema"] = self.ema
        if cfg.model.compile:
            self.model = torch.compile(self.model, mode=cfg.model.compile_mode)
        self.augment = GpuAugment(cfg.augment.jitter, channels_last=cfg.model.channels_last).to(self.device)
        self.checkpointer = Checkpointer(acc, self.out, cfg, self.loader, checkpointed, self.mirror)
        self.audit = ShardAudit(self.out, acc.process_index)
        self.stop = StopRequest()
        self.metrics: MetricsLog | None = None
        self.step = self.images_seen = 0
        self.effective_batch = cfg.loader.batch_size * acc.num_processes * self.grad_accum

    # ---- hooks for stages built on this trainer (finetune) -----------------------------------
    def init_model(self, model: torch.nn.Module) -> None:
        """Called on the freshly built model, before it is prepared (pretraining: random init)."""

    def on_evaluated(self, metrics: dict) -> None:
        """Called on every rank after an evaluation, before any checkpoint of that step."""

    def model_info(self) -> dict:
        """What model.json records beside the whole model's weights."""
        return {"model": self.cfg.model.name, "num_classes": self.info.num_outputs, "target": self.cfg.data.target,
                "image_size": self.cfg.loader.image_size, "crop_pct": self.cfg.loader.crop_pct,
                "labels": str(Path(self.info.labels_dir).resolve()), "step": self.step,
                "model_config": asdict(self.cfg.model)}

    def bare_model(self) -> torch.nn.Module:
        """The model without DDP and torch.compile wrappers (state-dict names without prefixes)."""
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    # ---- one micro-batch ---------------------------------------------------------------------
    def _targets(self, batch: dict) -> torch.Tensor:
        return batch_targets(batch, self.cfg.data.target, self.info.num_outputs, self.device, self.cfg.loss.reduction)

    def _check_batch(self, batch: dict) -> None:
        check_ids(batch[target_ids_key(self.cfg.data.target)], self.info.num_outputs)   # on the CPU: no sync

    def train_micro_batch(self, batch: dict) -> tuple[torch.Tensor, int, bool]:
        """Forward, backward, and the optimizer/scheduler/EMA step when this micro-batch completes
        an accumulation. Returns (the loss, detached and not synchronised; images; whether the
        optimizer stepped)."""
        acc = self.accelerator
        images = self.augment(self.loader.path.device_images(batch, self.device, self.cfg.loader.image_size))
        targets = self._targets(batch)
        with acc.accumulate(self.model):
            loss = self.criterion(self.model(images), targets, batch)
            acc.backward(loss)
            if acc.sync_gradients:
                self._sync_criterion_grads()
            if acc.sync_gradients and self.cfg.optim.clip_grad:
                acc.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        stepped = acc.sync_gradients
        if stepped:
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.bare_model())
        return loss.detach(), images.shape[0], stepped

    def _sync_criterion_grads(self) -> None:
        """The criterion's own parameters (MultiGrain's beta, the multi-task LW-Set head) are not in
        the DDP model: average their gradients over the ranks as DDP does the model's, so that they
        stay identical on every rank. A parameter without a gradient counts as zero."""
        params = [p for p in self.criterion.parameters() if p.requires_grad]
        if not params or self.accelerator.num_processes < 2:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        flat = self.accelerator.reduce(flat, reduction="mean")
        for p, g in zip(params, torch.split(flat, [p.numel() for p in params])):
            p.grad = g.view_as(p).clone()

    # ---- evaluation --------------------------------------------------------------------------
    def eval_loader(self, split_dir: Path, shards: list[str] | None = None) -> tuple[ShardLoader | None, bool]:
        return eval_loader(split_dir, self.cfg.loader, self.accelerator.process_index,
                           self.accelerator.num_processes, shards)

    def eval_outputs(self, loader: ShardLoader, max_batches: int = 0):
        """:func:`pretrain.evaluation.model_outputs` of the bare model, under the run's autocast."""
        return model_outputs([self.bare_model()], [loader], self.device, self.accelerator.autocast,
                             max_batches, normalise=self.augment)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and precision@k on the held-out shards, averaged over the images that have targets
        (padding samples excluded); LW-Set also top-1 agreement with the (noisy) web label."""
        if not self.info.holdout_shards:
            return {}
        loader, shared = self.eval_loader(self.info.train_dir, self.info.holdout_shards)
        if loader is None:
            return {}
        ks, lw = self.cfg.train.precision_at, self.cfg.data.target == "weights"
        sums = torch.zeros(len(ks) + 3, device=self.device)   # [images, loss sum, p@k sums..., top-1 = web label]
        for (logits,), batch, keep in self.eval_outputs(loader, self.cfg.data.eval_batches):
            targets = self._targets(batch)[keep.to(self.device)]
            p = precision_at_k(logits, targets, ks)
            sums[0] += p[0]
            sums[1] += self.criterion.loss(logits, targets) * logits.shape[0]   # a batch mean -> a sum
            for j, k in enumerate(ks):
                sums[2 + j] += p[k]
            if lw:
                sums[-1] += (logits.argmax(dim=1) == batch["class_id"][keep].to(self.device)).sum()
        if shared:
            sums = self.accelerator.reduce(sums, reduction="sum")
        n = float(sums[0].clamp_min(1))
        out = {"holdout_loss": float(sums[1]) / n}
        out.update({f"holdout_p@{k}": float(sums[2 + j]) / n for j, k in enumerate(ks)})
        if lw:
            out["holdout_top1_web_label"] = float(sums[-1]) / n
        return out

    # ---- the loop ----------------------------------------------------------------------------
    def fit(self) -> str:
        """Train to the last step, or until a stop request. Returns "finished" or "stopped"."""
        tc, result = self.cfg.train, "finished"
        self._start()
        report = Report(self.is_main, tc.progress, self.total_steps, self.step, "pretrain")
        window = MetricsWindow(self.device, self.accelerator.num_processes)
        last_saved = self.step if self.step else -1
        batches = DevicePrefetcher(self.loader, self.device, check=self._check_batch)   # one epoch per iter()
        step_check = StepStopCheck(self.accelerator, self.stop, tc.stop_check_every)   # between log points
        try:
            self.model.train()
            while self.step < self.total_steps and result == "finished":
                for batch in batches:
                    self.audit.record(self.step + 1, batch["meta"])
                    loss, n_images, stepped = self.train_micro_batch(batch)
                    window.add(loss, n_images)
                    if not stepped:
                        continue
                    self.step += 1
                    self.images_seen += self.effective_batch
                    report.step()
                    due = Due.at(self.step, self.total_steps, tc)
                    stop_now = step_check(self.step)   # every rank, every step: the same answer on all
                    if not (due.log or stop_now):
                        continue
                    stop = self._check_agreement(window) or stop_now   # the NaN check before any save
                    figures = window.row(self.accelerator, batches.take_waited())
                    row = {"epoch": batch["meta"].epoch, "loss": figures["loss"], "lr": self.scheduler.get_last_lr()[0],
                           "images_per_s": figures["images_per_s"], "data_wait": figures["data_wait"],
                           "images_seen": self.images_seen, "bad_samples": self.loader.bad_samples,
                           "remote_retries": self.loader.remote_retries}
                    if due.evaluate:
                        row.update(self.evaluate())
                        self.accelerator.wait_for_everyone()
                        self.on_evaluated(row)
                    if self.is_main:
                        self.metrics.log(self.step, row)
                        self.accelerator.log(trackers.metric_names(row), step=self.step)   # train.log_with's trackers (if any)
                    report.show(self.step, row)
                    if due.checkpoint or (stop and not due.last):
                        self.save_checkpoint(batches.in_flight)
                        last_saved = self.step
                    if stop and not due.last:
                        (log.warning if self.is_main else log.info)(
                            "stop requested (%s): checkpoint saved at step %d, exiting", self.stop.reason(), self.step)
                        result = "stopped"
                        break
                    window.reset()
                    if self.step >= self.total_steps:
                        break
            step_check.close()
            report.close()
            for name, value in self.criterion.learned().items():   # on every rank (WEBTAG_LOG_OTHER_RANKS)
                log.info("rank %d: criterion %s %.8f", self.accelerator.process_index, name, value)
            if result == "finished":
                if last_saved != self.step:
                    self.save_checkpoint()
                self._finish()
        except BaseException:
            self.stop.status("failed")
            raise
        finally:
            self.loader.close()   # its workers would otherwise stream on into the next epoch
            if self.metrics is not None:
                self.metrics.close()
            self.stop.restore()
            if tc.log_with:
                self.accelerator.end_training()
        self.stop.status(result)
        return result

    def _check_agreement(self, window: MetricsWindow) -> bool:
        """All ranks agree; a non-finite loss anywhere stops the run. Returns: a stop was requested."""
        bad, stop = agree(self.accelerator, window.nonfinite, self.stop)
        if bad:
            good = ckpt.list_checkpoints(self.out)
            raise NonFiniteLoss(
                f"the loss became NaN/inf before step {self.step} (checked every {self.cfg.train.log_every} "
                f"steps); nothing was saved after it. Last good checkpoint: "
                f"{good[-1] if good else 'none'}. Lower optim.lr, set optim.clip_grad, or check the data.")
        return stop

    def save_checkpoint(self, in_flight=()) -> Path:
        return self.checkpointer.save({"step": self.step, "images_seen": self.images_seen,
                                       "total_steps": self.total_steps}, in_flight)

    def _start(self) -> None:
        acc, tc = self.accelerator, self.cfg.train
        if self.mirror is not None:   # the newest checkpoint at the URL into the stage; one stage for all ranks
            run_mirror.start(acc, self.mirror, tc.resume)
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out / "config.yaml", dump_config(self.cfg))
        acc.wait_for_everyone()
        attach_run_log(self.out, acc.process_index)   # <output_dir>/train.log beside config.yaml, metrics.csv
        state = self.checkpointer.resume()
        if state is not None:
            self.step, self.images_seen = int(state["step"]), int(state.get("images_seen", 0))
        self.audit.truncate_after(self.step)
        if self.is_main:
            self.metrics = MetricsLog(self.out, tensorboard=tc.tensorboard)
            self.metrics.truncate_after(self.step)
        trackers.start(acc, tc.log_with, tc.tracker_project, self.out, self.cfg)
        self.stop.status("running")
        log.info("model %s, head %d (%s), %d processes (%s), per-device batch %d x %d devices x %d "
                 "accumulation steps = effective batch %d; %d training shards (%d images), %d held out; "
                 "%d steps (%d per epoch)",
                 self.cfg.model.name, self.info.num_outputs, self.cfg.data.target, acc.num_processes,
                 acc.distributed_type, self.cfg.loader.batch_size, acc.num_processes, self.grad_accum,
                 self.effective_batch, len(self.info.train_shards), self.info.train_samples,
                 len(self.info.holdout_shards), self.total_steps, self.steps_per_epoch)

    def _finish(self) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if self.is_main:
            info = self.model_info()   # the same description beside the backbone and the whole model
            save_backbone(self.bare_model(), self.out, self.cfg.model.name, info)
            save_model(self.bare_model(), self.out, info)
            if self.ema is not None:
                save_backbone(self.ema.module, self.out / "ema", self.cfg.model.name, info)
            summary = {"step": self.step, "images_seen": self.images_seen,
                       "backbone": BACKBONE_WEIGHTS,   # relative to the run folder: no machine's path
                       "last_metrics": self.metrics.rows[-1] if self.metrics and self.metrics.rows else {}}
            write_text_atomic(self.out / FINISHED, json.dumps(summary, indent=2) + "\n")
            log.info("finished: %d steps; backbone weights in %s", self.step, self.out / BACKBONE_WEIGHTS)
        self.checkpointer.push_run(last=(FINISHED,))   # a run folder at a URL: finished.json uploaded last
        acc.wait_for_everyone()
