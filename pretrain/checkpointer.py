"""The run's checkpointer: save and resume everything a run needs to continue where it stopped,
and the shards audit log (which shards each rank finished, at which step).

A checkpoint (:mod:`.checkpoint` for its folder layout and manifest) holds data only, no pickle
(:mod:`.state_io`): the parts the trainer names (``model``: ``model.safetensors``; ``optimizer``,
``scheduler``, ``ema``, ``criterion-<i>`` (a criterion's learnable parts); Accelerate's GradScaler
as ``scaler``), one ``rng-rank<R>`` state per process (python, numpy, torch, CUDA generators and
Accelerate's micro-batch counter), ``trainer_state.json`` (the step, the images seen, the loader
position merged over ranks, without the shards of batches that a device prefetcher holds but that
were not trained yet, and the config) and ``manifest.json``. Accelerate's ``save_state`` is not
used: its RNG and custom states are pickles, which run code when loaded.

A run folder at a URL (:mod:`.run_mirror`): the checkpoint is saved in the local stage as
above, then uploaded by the main process, its manifest last; a failed upload is a
CheckpointError on every rank (the local checkpoint stays, a rerun uploads it).

Saving: every rank writes its RNG state into the shared hidden folder, the main process the rest;
the ranks agree on any failure (a full disk, a read-only folder), the hidden folder is removed,
the previous checkpoints stay as they were, and every rank raises one CheckpointError. Resuming:
the main process picks the newest intact checkpoint (:func:`.checkpoint.choose_resume`) and tells
the other ranks. Resuming continues only the same model on the same kind of targets; other config
changes are allowed and listed.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable

from pipeline.loader import BatchMeta, ShardLoader, merge_states
from webtag.atomic import write_text_atomic

from . import checkpoint as ckpt
from .checkpoint import CheckpointError
from .data import DataError
from .state_io import StateFormatError, load_state, rng_state, save_state, set_rng_state

log = logging.getLogger("pretrain.trainer")
SHARD_LOG = "shards-rank{rank}.jsonl"
FATAL_CHANGES = ("model.name", "data.target", "data.labels")
RNG_STATE = "rng-rank{rank}"
SCALER = "scaler"


def _attempt(write: Callable[[], object]) -> str | None:
    """Run ``write``; a failure comes back as its reason (an OSError's: "No space left on device"),
    so that the ranks can agree on it instead of leaving the others waiting."""
    try:
        write()
    except OSError as exc:
        return exc.strerror or str(exc)
    except Exception as exc:   # not the disk: keep the traceback in the log
        log.exception("saving a checkpoint failed")
        return f"{type(exc).__name__}: {exc}"
    return None


class Checkpointer:
    """``parts``: name -> an object with ``state_dict()`` / ``load_state_dict()`` that the main
    process saves (the trainer's model, optimizer, LR scheduler, EMA, criterion parts)."""

    def __init__(self, accelerator, output_dir: Path, cfg, loader: ShardLoader, parts: dict | None = None,
                 mirror=None):
        self.acc, self.out, self.cfg, self.loader = accelerator, Path(output_dir), cfg, loader
        self.parts = dict(parts or {})
        self.mirror = mirror   # pretrain.run_mirror.RunMirror of a run folder at a URL, or None

    def _all_parts(self) -> dict:
        scaler = getattr(self.acc, "scaler", None)
        return {**self.parts, SCALER: scaler} if scaler is not None else self.parts

    # ---- resume ------------------------------------------------------------------------------
    def resume(self) -> dict | None:
        """Load the checkpoint ``train.resume`` names (auto: the newest intact one), if any; its
        trainer state."""
        from accelerate.utils import broadcast_object_list

        choice = [None]
        if self.acc.is_main_process:   # one process reads and hashes; the others follow its choice
            try:
                path, names = ckpt.choose_resume(self.cfg.train.resume, self.out)
                choice = [(str(path) if path else None, sorted(names), None)]
            except CheckpointError as exc:
                choice = [(None, [], str(exc))]
        choice = broadcast_object_list(choice)
        path, names, error = choice[0]
        if error:
            raise CheckpointError(error)
        if path is None:
            return None
        path, names = Path(path), set(names)
        state = self._read_trainer_state(path)
        self._check_config(path, state.get("config", {}))
        self._load_parts(path, names)
        self.loader.load_state_dict(state["loader"])
        log.info("resumed from %s: step %d, epoch %d, %d shards of the epoch already consumed",
                 path, state["step"], state["loader"]["epoch"], len(state["loader"]["consumed"]))
        return state

    @staticmethod
    def _read_trainer_state(path: Path) -> dict:
        try:
            state = ckpt.read_state(path)
            if not all(k in state for k in ("step", "loader")) or not {"epoch", "consumed"} <= set(state["loader"]):
                raise ValueError("no step or loader position")
            return state
        except (ValueError, TypeError, KeyError, OSError) as exc:
            raise CheckpointError(f"{path / ckpt.STATE_FILE}: not a readable trainer state ({exc})") from None

    def _load_parts(self, path: Path, names: set[str]) -> None:
        rank, what = self.acc.process_index, ""
        try:
            for what, part in self._all_parts().items():
                part.load_state_dict(load_state(path, what, names))
            what = RNG_STATE.format(rank=rank)
            if f"{what}.json" in names:
                rng = load_state(path, what, names)
                set_rng_state(rng, str(path / f"{what}.json"))
                self.acc.step = int(rng.get("accelerate_step", self.acc.step))
            else:   # the run had fewer processes
                log.warning("%s has no random-generator state for rank %d: it keeps its seeded one", path, rank)
        except StateFormatError as exc:
            raise CheckpointError(f"cannot resume from {path}: {exc}") from None
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:   # load_state_dict: names or shapes differ
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise CheckpointError(f"cannot resume from {path}: its {what} state does not fit this run "
                                  f"({type(exc).__name__}: {first})") from None

    def _check_config(self, path: Path, saved: dict) -> None:
        now = asdict(self.cfg)
        changed = sorted(f"{sec}.{key}: {saved[sec][key]!r} -> {now[sec][key]!r}"
                         for sec in now if isinstance(now[sec], dict) and isinstance(saved.get(sec), dict)
                         for key in now[sec] if key in saved[sec] and saved[sec][key] != now[sec][key])
        fatal = [c for c in changed if c.split(":")[0] in FATAL_CHANGES]
        if fatal:
            raise DataError(f"train.resume: {path} was trained with another setup ({'; '.join(fatal)}); "
                            "use another train.output_dir, or train.resume=none to start over")
        if changed:
            log.warning("resuming %s with a changed config: %s", path, "; ".join(changed))

    # ---- save --------------------------------------------------------------------------------
    def _agree(self, error: str | None, tmp: Path, final: Path) -> None:
        """Every rank: if any rank failed, the main process removes ``tmp`` and all raise."""
        from accelerate.utils import gather_object

        errors = [e for e in gather_object([error]) if e]
        if errors:
            if self.acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
            raise CheckpointError(f"cannot save checkpoint to {final}: {errors[0]}")

    def save(self, state: dict, in_flight: Iterable[BatchMeta] = ()) -> Path:
        """Every rank: write this rank's part, then the main process adds the other parts,
        ``state`` (step, ...) with the merged loader position, the manifest, and publishes the
        folder. A failure on any rank: CheckpointError on every rank, nothing published."""
        from accelerate.utils import gather_object

        acc, step = self.acc, state["step"]
        tmp = ckpt.tmp_dir(self.out, step)
        final = ckpt.checkpoint_root(self.out) / ckpt.checkpoint_name(step)
        error = None
        if acc.is_main_process:
            def make_tmp():
                if tmp.exists():
                    shutil.rmtree(tmp)
                tmp.mkdir(parents=True)   # before any rank writes its part into it
            error = _attempt(make_tmp)
        self._agree(error, tmp, final)
        rank_state = {**rng_state(), "accelerate_step": int(acc.step)}
        error = _attempt(lambda: save_state(rank_state, tmp, RNG_STATE.format(rank=acc.process_index)))
        gathered = gather_object([(self.loader.state_dict(in_flight=in_flight), error)])
        self._agree(next((e for _, e in gathered if e), None), tmp, final)
        loader_state = merge_states([s for s, _ in gathered])
        error = None
        if acc.is_main_process:
            def write_rest():
                for name, part in self._all_parts().items():
                    save_state(part.state_dict(), tmp, name)
                ckpt.finish(tmp, {**state, "loader": loader_state, "config": asdict(self.cfg)},
                            self.cfg.train.keep_checkpoints)
            error = _attempt(write_rest)
        self._agree(error, tmp, final)
        if self.mirror is not None:   # complete remotely before it counts
            self._upload(lambda: self.mirror.push_checkpoint(final),
                         f"checkpoint {final} was saved locally but not uploaded to {self.mirror}",
                         " (a rerun with the same train.stage_dir resumes from it and uploads it)")
        if acc.is_main_process:
            log.info("checkpoint %s%s", final, f" (uploaded to {self.mirror})" if self.mirror else "")
        return final

    def push_run(self, last: tuple[str, ...] = ()) -> None:
        """Every rank: for a run folder at a URL, the main process uploads the files changed since
        the last upload (``last`` after the others); a failure raises CheckpointError on every rank."""
        if self.mirror is not None:
            self._upload(lambda: self.mirror.push_run(last),
                         f"the run folder {self.out} was not uploaded to {self.mirror}")

    def _upload(self, upload: Callable[[], object], what: str, hint: str = "") -> None:
        """Every rank: the main process runs ``upload``; its failure is one CheckpointError on all."""
        from accelerate.utils import gather_object

        error = _attempt(upload) if self.acc.is_main_process else None
        errors = [e for e in gather_object([error]) if e]
        if errors:
            raise CheckpointError(f"{what}: {errors[0]}{hint}")


class ShardAudit:
    """``shards-rank<R>.jsonl``: one line per batch that finished shards (epoch, the step it was
    trained in, the shards): the audit trail of "no shard read twice". On resume the lines after
    the checkpoint's step go: what a killed run read after its last checkpoint is read again."""

    def __init__(self, output_dir: Path, rank: int):
        self.path = Path(output_dir) / SHARD_LOG.format(rank=rank)

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()

        def before(line: str) -> bool:
            try:
                return json.loads(line)["step"] <= step
            except (ValueError, KeyError, TypeError):  # a line cut short by a kill
                return False

        keep = [ln for ln in lines if before(ln)]
        if len(keep) != len(lines):
            write_text_atomic(self.path, "".join(ln + "\n" for ln in keep))

    def record(self, step: int, meta: BatchMeta) -> None:
        if meta.shards_done:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"epoch": meta.epoch, "step": step, "shards": list(meta.shards_done)}) + "\n")
