"""The run's checkpointer: save and resume everything a run needs to continue where it stopped,
and the shards audit log (which shards each rank finished, at which step).

A checkpoint (:mod:`.checkpoint` for its folder layout) is Accelerate's ``save_state`` (model,
optimizer, scaler, RNG of every process, and the registered objects: LR scheduler, EMA, a
criterion's learnable parts) plus ``trainer_state.json``: the step, the images seen, the loader
position merged over ranks (without the shards of batches that a device prefetcher holds but
that were not trained yet) and the config. Resuming continues only the same model on the same
kind of targets; other config changes are allowed and listed.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

from pipeline.loader import BatchMeta, ShardLoader, merge_states
from webtag.atomic import write_text_atomic

from . import checkpoint as ckpt
from .data import DataError

log = logging.getLogger("pretrain.trainer")
SHARD_LOG = "shards-rank{rank}.jsonl"
FATAL_CHANGES = ("model.name", "data.target", "data.labels")


class Checkpointer:
    def __init__(self, accelerator, output_dir: Path, cfg, loader: ShardLoader):
        self.acc, self.out, self.cfg, self.loader = accelerator, Path(output_dir), cfg, loader

    def resume(self) -> dict | None:
        """Load the checkpoint ``train.resume`` names (auto: the newest), if any; its trainer state."""
        path = ckpt.resolve_resume(self.cfg.train.resume, self.out)
        if path is None:
            return None
        state = ckpt.read_state(path)
        self._check_config(path, state.get("config", {}))
        self.acc.load_state(str(path))
        self.loader.load_state_dict(state["loader"])
        log.info("resumed from %s: step %d, epoch %d, %d shards of the epoch already consumed",
                 path, state["step"], state["loader"]["epoch"], len(state["loader"]["consumed"]))
        return state

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

    def save(self, state: dict, in_flight: Iterable[BatchMeta] = ()) -> Path:
        """Every rank: write this rank's part, then the main process adds ``state`` (step, ...) with
        the merged loader position and publishes the folder."""
        from accelerate.utils import gather_object

        acc, step = self.acc, state["step"]
        tmp = ckpt.tmp_dir(self.out, step)
        if acc.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)   # before any rank writes its part into it
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        loader_state = merge_states(gather_object([self.loader.state_dict(in_flight=in_flight)]))
        acc.wait_for_everyone()
        final = ckpt.checkpoint_root(self.out) / ckpt.checkpoint_name(step)
        if acc.is_main_process:
            final = ckpt.finish(tmp, {**state, "loader": loader_state, "config": asdict(self.cfg)},
                                self.cfg.train.keep_checkpoints)
            log.info("checkpoint %s", final)
        acc.wait_for_everyone()
        return final


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
