"""The training engine: WT-Set / LW-Set pretraining under HuggingFace Accelerate.

One process per device (``accelerate launch``); each builds its own :class:`pipeline.loader.ShardLoader`
for its rank (the loader is never passed to ``accelerator.prepare``: Accelerate would re-split an
IterableDataset by reading everything on every rank). Per micro-batch: uint8 images to the device
(nvJPEG decode there with ``loader.decode=gpu``), colour jitter + normalise on the device, sparse
labels -> dense targets on the device, forward under autocast, backward under
``accelerator.accumulate`` (the optimizer steps every ``train.grad_accum`` micro-batches).

Every ``train.log_every`` optimizer steps the ranks agree (one small all-reduce) on two flags: a
non-finite loss since the last check (the run stops, keeping the last good checkpoint; nothing
is saved after a NaN) and a stop request (SIGUSR1/SIGTERM, or the file ``$WEBTAG_CONTROL_DIR/stop``
that the Slurm script's signal trap writes): the run saves a checkpoint and exits so the job can
requeue itself. ``train.resume=auto`` continues from the newest complete checkpoint, loader
position included (pipeline.loader: no shard read twice in the epoch, none skipped).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterator

import torch

from pipeline.gpu_augment import GpuAugment
from pipeline.loader import ShardLoader, gpu_decode, merge_states
from pipeline.schema import read_sizes
from webtag.atomic import write_text_atomic
from webtag.config import ConfigError, dump_config

from . import checkpoint as ckpt
from .config import PretrainConfig
from .data import DataError, DataInfo, inspect_data
from .losses import batch_targets, build_loss, check_ids, target_ids_key
from .metrics import MetricsLog, precision_at_k
from .model import BACKBONE_WEIGHTS, head_prefix, load_whole_model, save_backbone, save_model
from .multigrain import MarginLoss, joint_loss
from .optim import ModelEma, build_optimizer, build_scheduler
from .options import build_full_model

log = logging.getLogger(__name__)

CONTROL_ENV = "WEBTAG_CONTROL_DIR"   # set by slurm/pretrain.sh: the trap writes <dir>/stop, we write <dir>/status
SHARD_LOG = "shards-rank{rank}.jsonl"
FINISHED = "finished.json"


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


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf: the run stops; the last checkpoint stays the last good one."""


class StopRequest:
    """A stop asked for by a signal (SIGUSR1: Slurm's warning before the time limit; SIGTERM) or
    by the control file ``$WEBTAG_CONTROL_DIR/stop``."""

    def __init__(self):
        self.signalled: str | None = None
        control = os.environ.get(CONTROL_ENV)
        self.control_dir = Path(control) if control else None
        self._old = {}
        for sig in (signal.SIGUSR1, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook): the control file still works
                pass

    def _handle(self, signum, frame):
        self.signalled = signal.Signals(signum).name

    def requested(self) -> bool:
        return bool(self.signalled) or bool(self.control_dir and (self.control_dir / "stop").exists())

    def status(self, text: str) -> None:
        if self.control_dir:
            self.control_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.control_dir / "status", text + "\n")

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _truncate_shard_log(path: Path, step: int) -> None:
    """The shards log of a rank (one line per batch that finished shards) keeps only the lines up
    to ``step``: what a killed run read after its last checkpoint is read again after the resume."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()

    def before(line: str) -> bool:
        try:
            return json.loads(line)["step"] <= step
        except (ValueError, KeyError, TypeError):  # a line cut short by a kill
            return False

    keep = [ln for ln in lines if before(ln)]
    if len(keep) != len(lines):
        write_text_atomic(path, "".join(ln + "\n" for ln in keep))


class Trainer:
    """Builds everything from a :class:`PretrainConfig`, then :meth:`fit` trains.

    ``step`` counts optimizer steps; an epoch is one pass of the loader over the training shards.
    The run lasts ``train.max_steps`` optimizer steps, else ``epochs x steps per epoch``; a resumed
    run ends at the same step as an uninterrupted one."""

    def __init__(self, cfg: PretrainConfig):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.cfg = cfg
        tc = cfg.train
        self.info: DataInfo = inspect_data(cfg.data, cfg.model)   # refuse a mismatch before anything runs
        # the process count before Accelerate starts (creating its state early would pin it to
        # the defaults); checked against Accelerate's below
        world = int(os.environ.get("WORLD_SIZE", "1"))
        self.grad_accum = accumulation_steps(tc, cfg.loader.batch_size, world)
        self.accelerator = acc = Accelerator(mixed_precision=tc.mixed_precision,
                                             gradient_accumulation_steps=self.grad_accum,
                                             step_scheduler_with_optimizer=False)
        self.device = acc.device
        if acc.num_processes != world:
            raise ConfigError(f"Accelerate runs {acc.num_processes} processes but WORLD_SIZE is {world}")
        self.out = Path(tc.output_dir)
        set_seed(tc.seed)
        model = build_full_model(cfg.model, cfg.gcn, cfg.srn, cfg.data.labels, cfg.data.target, self.info.num_outputs)
        if cfg.model.init_weights:
            load_whole_model(model, cfg.model.init_weights)
        self.init_model(model)
        if cfg.model.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.loader = ShardLoader(self.info.train_dir, cfg.loader, rank=acc.process_index,
                                  world_size=acc.num_processes, n_keywords=self.info.num_keywords,
                                  shards=self.info.train_shards)
        self.micro_per_epoch = len(self.loader)
        self.steps_per_epoch = max(1, self.micro_per_epoch // self.grad_accum)
        self.total_steps = tc.max_steps or max(1, (tc.epochs * self.micro_per_epoch) // self.grad_accum)
        self.margin, self._features = None, {}
        if cfg.loss.margin_lambda is not None:   # MultiGrain: the classifier's input is the embedding
            if cfg.loader.repeat_aug < 2:
                log.warning("loss.margin_lambda without loader.repeat_aug >= 2: a batch holds no positive pairs")
            self.margin = MarginLoss(cfg.loss.margin_alpha, cfg.loss.margin_beta)
            classifier = model.get_submodule(head_prefix(model))
            classifier.register_forward_pre_hook(lambda mod, args: self._features.__setitem__("embedding", args[0]))
        optimizer = build_optimizer(model, cfg.optim, list(self.margin.parameters()) if self.margin else None)
        self.scheduler = build_scheduler(optimizer, cfg.optim, self.total_steps, self.steps_per_epoch)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        acc.register_for_checkpointing(self.scheduler)
        if self.margin is not None:
            self.margin.to(self.device)
            acc.register_for_checkpointing(self.margin)
        self.ema = None
        if cfg.optim.ema_decay:
            self.ema = ModelEma(self.bare_model(), cfg.optim.ema_decay)
            acc.register_for_checkpointing(self.ema)
        if cfg.model.compile:
            self.model = torch.compile(self.model, mode=cfg.model.compile_mode)
        self.augment = GpuAugment(cfg.augment.jitter).to(self.device)
        self.loss_fn = build_loss(cfg.loss)
        self.step = 0
        self.images_seen = 0
        self.metrics: MetricsLog | None = None
        self.stop = StopRequest()
        self._waited = 0.0                  # seconds blocked on the loader (data-wait share)
        self._pending_done: list[str] = []  # shards finished by a prefetched, untrained batch
        self.effective_batch = cfg.loader.batch_size * acc.num_processes * self.grad_accum

    # ------------------------------------------------------------------------------------------
    # hooks for stages built on this trainer (finetune) ----------------------------------------
    def init_model(self, model: torch.nn.Module) -> None:
        """Called on the freshly built model, before it is prepared (pretraining: random init)."""

    def on_evaluated(self, metrics: dict) -> None:
        """Called on every rank after an evaluation, before any checkpoint of that step."""

    def model_info(self) -> dict:
        """What model.json records beside the whole model's weights."""
        return {"model": self.cfg.model.name, "num_classes": self.info.num_outputs, "target": self.cfg.data.target,
                "image_size": self.cfg.loader.image_size, "crop_pct": self.cfg.loader.crop_pct,
                "labels": str(Path(self.cfg.data.labels).resolve()), "step": self.step,
                "model_config": asdict(self.cfg.model), "gcn": asdict(self.cfg.gcn), "srn": asdict(self.cfg.srn)}

    def bare_model(self) -> torch.nn.Module:
        """The model without DDP and torch.compile wrappers (state-dict names without prefixes)."""
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def _images(self, batch: dict, train: bool) -> torch.Tensor:
        if batch.get("image") is None:   # decode=gpu: JPEG bytes + crop boxes
            images = gpu_decode(batch, self.cfg.loader.image_size, self.device)
        else:
            images = batch["image"].to(self.device, non_blocking=True)
        x = self.augment(images, train=train)
        return x if self.cfg.model.channels_last else x.contiguous()

    def device_batches(self, batches) -> Iterator[dict]:
        """The loader's batches with their tensors on the device (JPEG bytes of decode=gpu stay on
        the CPU: nvJPEG reads them there). On CUDA the next batch is copied on a side stream while
        the current one trains, so the copy is off the compute stream's critical path; the
        loader position saved in a checkpoint leaves out the shards finished by that prefetched,
        not yet trained batch (``self._pending_done``)."""
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        it = iter(batches)
        ids_key = target_ids_key(self.cfg.data.target)

        def fetch():
            t0 = time.perf_counter()
            batch = next(it, None)
            self._waited += time.perf_counter() - t0
            if batch is None:
                return None
            batch["_done"] = list(self.loader.last_done)
            check_ids(batch[ids_key], self.info.num_outputs)   # on the CPU: no device sync
            with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
                for key, value in batch.items():
                    if isinstance(value, torch.Tensor) and key not in ("jpeg_data", "jpeg_offsets"):
                        batch[key] = value.to(self.device, non_blocking=True)
            return batch

        if not cuda:   # no copy to overlap: one batch at a time
            while (batch := fetch()) is not None:
                yield batch
            return
        nxt = fetch()
        while nxt is not None:
            current = nxt
            main = torch.cuda.current_stream(self.device)
            main.wait_stream(stream)
            for value in current.values():
                if isinstance(value, torch.Tensor) and value.is_cuda:
                    value.record_stream(main)   # the allocator must not reuse it early
            nxt = fetch()
            self._pending_done = nxt["_done"] if nxt is not None else []
            yield current

    def _targets(self, batch: dict) -> torch.Tensor:
        return batch_targets(batch, self.cfg.data.target, self.info.num_outputs, self.device)

    def train_micro_batch(self, batch: dict) -> tuple[torch.Tensor, int, bool]:
        """One micro-batch: forward, backward, and the optimizer/scheduler/EMA step when this
        micro-batch completes an accumulation. Returns (the loss, detached and not synchronised;
        images; whether the optimizer stepped)."""
        acc = self.accelerator
        images = self._images(batch, train=True)
        targets = self._targets(batch)
        with acc.accumulate(self.model):
            logits = self.model(images)
            loss = self.loss_fn(logits, targets)
            if self.margin is not None:
                retrieval = self.margin(self._features.pop("embedding"), batch["instance"].to(self.device))
                loss = joint_loss(loss, retrieval, self.cfg.loss.margin_lambda)
            acc.backward(loss)
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

    # ------------------------------------------------------------------------------------------
    def _start(self) -> None:
        acc, tc = self.accelerator, self.cfg.train
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out / "config.yaml", dump_config(self.cfg))
        acc.wait_for_everyone()
        resume = ckpt.resolve_resume(tc.resume, self.out)
        if resume is not None:
            state = ckpt.read_state(resume)
            self._check_resume_config(resume, state.get("config", {}))
            acc.load_state(str(resume))
            self.step = int(state["step"])
            self.images_seen = int(state.get("images_seen", 0))
            self.loader.load_state_dict(state["loader"])
            log.info("resumed from %s: step %d, epoch %d, %d shards of the epoch already consumed",
                     resume, self.step, state["loader"]["epoch"], len(state["loader"]["consumed"]))
        if self.is_main:
            self.metrics = MetricsLog(self.out, tensorboard=tc.tensorboard)
            self.metrics.truncate_after(self.step)
        log.info("model %s, head %d (%s), %d processes (%s), per-device batch %d x %d devices x %d "
                 "accumulation steps = effective batch %d; %d training shards (%d images), %d held out; "
                 "%d steps (%d per epoch)",
                 self.cfg.model.name, self.info.num_outputs, self.cfg.data.target, acc.num_processes,
                 acc.distributed_type, self.cfg.loader.batch_size, acc.num_processes, self.grad_accum,
                 self.effective_batch, len(self.info.train_shards), self.info.train_samples,
                 len(self.info.holdout_shards), self.total_steps, self.steps_per_epoch)

    def _check_resume_config(self, path: Path, saved: dict) -> None:
        """A checkpoint continues only the same model on the same kind of targets; other changes
        (more steps, another LR, another number of processes) are allowed and listed."""
        now = asdict(self.cfg)
        changed = sorted(f"{sec}.{key}: {saved[sec][key]!r} -> {now[sec][key]!r}"
                         for sec in now if isinstance(now[sec], dict) and isinstance(saved.get(sec), dict)
                         for key in now[sec] if key in saved[sec] and saved[sec][key] != now[sec][key])
        fatal = [c for c in changed if c.split(":")[0] in ("model.name", "data.target", "data.labels")]
        if fatal:
            raise DataError(f"train.resume: {path} was trained with another setup ({'; '.join(fatal)}); "
                            "use another train.output_dir, or train.resume=none to start over")
        if changed:
            log.warning("resuming %s with a changed config: %s", path, "; ".join(changed))

    def _agree(self, nonfinite: torch.Tensor) -> tuple[bool, bool]:
        """All ranks: (a non-finite loss anywhere, a stop requested anywhere)."""
        flags = torch.stack([nonfinite.float().reshape(()).to(self.device),
                             torch.tensor(float(self.stop.requested()), device=self.device)])
        flags = self.accelerator.reduce(flags, reduction="sum")
        return bool(flags[0] > 0), bool(flags[1] > 0)

    def save_checkpoint(self) -> Path:
        acc = self.accelerator
        tmp = ckpt.tmp_dir(self.out, self.step)
        if self.is_main:
            if tmp.exists():
                import shutil
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)   # before any rank writes its part into it
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        from accelerate.utils import gather_object
        mine = self.loader.state_dict()
        mine["consumed"] = sorted(set(mine["consumed"]) - set(self._pending_done))
        loader_state = merge_states(gather_object([mine]))
        acc.wait_for_everyone()
        final = ckpt.checkpoint_root(self.out) / ckpt.checkpoint_name(self.step)
        if self.is_main:
            final = ckpt.finish(tmp, {"step": self.step, "images_seen": self.images_seen, "loader": loader_state,
                                      "total_steps": self.total_steps, "config": asdict(self.cfg)},
                                self.cfg.train.keep_checkpoints)
            log.info("checkpoint %s", final)
        acc.wait_for_everyone()
        return final

    # ------------------------------------------------------------------------------------------
    def eval_loader(self, split_dir: Path, shards: list[str] | None = None) -> tuple[ShardLoader | None, bool]:
        """An ordered, centre-crop loader over ``shards`` of ``split_dir`` for this rank, and whether
        the ranks share the work (enough shards for every rank); otherwise the main process
        evaluates alone and the others get None."""
        acc = self.accelerator
        names = shards if shards is not None else list(read_sizes(split_dir))
        shared = len(names) >= acc.num_processes
        if not shared and not self.is_main:
            return None, False
        world = acc.num_processes if shared else 1
        ecfg = replace(self.cfg.loader, train=False, sampling="instance", repeat_aug=1,
                       workers=min(self.cfg.loader.workers, max(1, len(names) // world)))
        return ShardLoader(split_dir, ecfg, rank=acc.process_index if shared else 0, world_size=world,
                           shards=names), shared

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and precision@k on the held-out shards, averaged over the images that have targets
        (padding samples excluded)."""
        holdout = self.info.holdout_shards
        if not holdout:
            return {}
        acc = self.accelerator
        loader, shared = self.eval_loader(self.info.train_dir, holdout)
        if loader is None:
            return {}
        model = self.bare_model()
        was_training = model.training
        model.eval()
        ks = self.cfg.train.precision_at
        lw = self.cfg.data.target == "weights"
        sums = torch.zeros(len(ks) + 3, device=self.device)   # [images, loss sum, p@k sums..., top-1 = web label]
        for i, batch in enumerate(loader):
            if self.cfg.data.eval_batches and i >= self.cfg.data.eval_batches:
                break
            keep = ~batch["padding"].to(self.device)
            with acc.autocast():
                logits = model(self._images(batch, train=False))
            logits, targets = logits.float()[keep], self._targets(batch)[keep]
            p = precision_at_k(logits, targets, ks)
            n = p[0]
            sums[0] += n
            sums[1] += self.loss_fn(logits, targets) * logits.shape[0]   # a batch mean -> a sum
            for j, k in enumerate(ks):
                sums[2 + j] += p[k]
            if lw:   # LW-Set: does the top class agree with the image's (noisy) web label?
                cls = batch["class_id"].to(self.device)[keep]
                sums[-1] += (logits.argmax(dim=1) == cls).sum()
        model.train(was_training)
        if shared:
            sums = acc.reduce(sums, reduction="sum")
        n = float(sums[0].clamp_min(1))
        out = {"holdout_loss": float(sums[1]) / n}
        out.update({f"holdout_p@{k}": float(sums[2 + j]) / n for j, k in enumerate(ks)})
        if lw:
            out["holdout_top1_web_label"] = float(sums[-1]) / n
        return out

    # ------------------------------------------------------------------------------------------
    def fit(self) -> str:
        """Train to the last step, or until a stop request. Returns "finished" or "stopped"."""
        acc, tc = self.accelerator, self.cfg.train
        self._start()
        self.stop.status("running")
        shard_log = self.out / SHARD_LOG.format(rank=acc.process_index)
        _truncate_shard_log(shard_log, self.step)
        last_saved = self.step if self.step else -1
        result = "finished"
        window_t0, window_images = time.perf_counter(), 0
        self._waited = 0.0
        loss_sum = torch.zeros((), device=self.device)
        nonfinite = torch.zeros((), device=self.device)
        loss_count = 0
        try:
            from tqdm import tqdm
            bar = tqdm(total=self.total_steps, initial=self.step, disable=not (self.is_main and tc.progress),
                       desc="pretrain", unit="step", dynamic_ncols=True, mininterval=2.0)
            self.model.train()
            while self.step < self.total_steps and result == "finished":
                epoch = self.loader.epoch
                it = self.device_batches(self.loader)
                while self.step < self.total_steps:
                    batch = next(it, None)
                    if batch is None:
                        break
                    done = batch.pop("_done")
                    if done:
                        with open(shard_log, "a", encoding="utf-8") as fh:
                            fh.write(json.dumps({"epoch": epoch, "step": self.step + 1, "shards": done}) + "\n")
                    d, n_images, stepped = self.train_micro_batch(batch)
                    nonfinite += (~torch.isfinite(d)).float()
                    loss_sum += torch.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0)
                    loss_count += 1
                    window_images += n_images * acc.num_processes
                    if not stepped:
                        continue
                    self.step += 1
                    self.images_seen += self.effective_batch
                    bar.update(1)
                    last = self.step >= self.total_steps
                    due_ckpt = bool(tc.checkpoint_every) and self.step % tc.checkpoint_every == 0
                    due_eval = bool(tc.eval_every) and self.step % tc.eval_every == 0
                    if not (last or due_ckpt or due_eval or self.step % tc.log_every == 0):
                        continue
                    bad, stop = self._agree(nonfinite)
                    if bad:
                        good = ckpt.list_checkpoints(self.out)
                        raise NonFiniteLoss(
                            f"the loss became NaN/inf before step {self.step} (checked every {tc.log_every} "
                            f"steps); nothing was saved after it. Last good checkpoint: "
                            f"{good[-1] if good else 'none'}. Lower optim.lr, set optim.clip_grad, or check the data.")
                    elapsed = time.perf_counter() - window_t0
                    row = {"epoch": epoch, "loss": float(acc.reduce(loss_sum, reduction="mean")) / max(1, loss_count),
                           "lr": self.scheduler.get_last_lr()[0],
                           "images_per_s": window_images / max(elapsed, 1e-9),
                           "data_wait": self._waited / max(elapsed, 1e-9),
                           "images_seen": self.images_seen,
                           "bad_samples": self.loader.bad_samples}
                    if due_eval or last:
                        row.update(self.evaluate())
                        acc.wait_for_everyone()
                        self.on_evaluated(row)
                    if self.is_main:
                        self.metrics.log(self.step, row)
                        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.3g}",
                                        img_s=f"{row['images_per_s']:.0f}", wait=f"{row['data_wait']:.0%}")
                        if not tc.progress:
                            log.info("step %d/%d %s", self.step, self.total_steps,
                                     " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                              for k, v in row.items()))
                    if due_ckpt or (stop and not last):
                        self.save_checkpoint()
                        last_saved = self.step
                    if stop and not last:
                        (log.warning if self.is_main else log.info)("stop requested (%s): checkpoint saved at step %d, exiting",
                                    self.stop.signalled or "control file", self.step)
                        result = "stopped"
                        break
                    window_t0, window_images = time.perf_counter(), 0
                    self._waited = 0.0
                    loss_sum.zero_()
                    loss_count = 0
                it.close()
                self._pending_done = []
            bar.close()
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
        self.stop.status(result)
        return result

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
                       "backbone": str(self.out / BACKBONE_WEIGHTS),
                       "last_metrics": self.metrics.rows[-1] if self.metrics and self.metrics.rows else {}}
            write_text_atomic(self.out / FINISHED, json.dumps(summary, indent=2) + "\n")
            log.info("finished: %d steps; backbone weights in %s", self.step, self.out / BACKBONE_WEIGHTS)
        acc.wait_for_everyone()

