"""A run folder at an object-store URL (``train.output_dir=s3://bucket/runs/wt``).

The trainer writes its run folder on local disk, the stage (``train.stage_dir``, default
``$WEBTAG_STAGE_DIR/<hash of the URL>`` or the same below the temporary folder), exactly as for a
local run; :class:`RunMirror` keeps the URL up to date from it:

- :meth:`RunMirror.claim`, first: the stage and the URL hold the same run id (``webtag-run.json``);
  a stage left by another run of the same URL is emptied, so that nothing is resumed from a run
  that is no longer at the URL.
- :meth:`RunMirror.pull`, before resuming: the newest complete checkpoint at the URL is downloaded
  into the stage when the stage has no intact copy of it (a job restarted on another node, whose
  local disk is empty), with the run's other files that the stage does not have (``metrics.csv``,
  ``shards-rank*.jsonl``, ``train.log``, finetuning's ``best/``, ...). The usual resume then runs on
  the stage.
- :meth:`RunMirror.push_checkpoint`, after every checkpoint (the ranks agree on a failure, as for a
  full disk): the checkpoint's files, its ``manifest.json`` last. A remote checkpoint counts only
  once its manifest is there, so one cut short by a kill is never resumed from; the local
  manifest's sizes and sha256 are checked again after a pull. Then the run's other files (only
  those changed since the last upload), and the checkpoints that the local pruning removed
  (``train.keep_checkpoints``) are deleted remotely, their manifest first.
- :meth:`RunMirror.push_run`, at the end: the weights and logs, ``finished.json`` last.

Every rank writes its RNG state into the stage's checkpoint folder, so on several nodes the stage
must be a folder that all ranks see (a shared file system): the trainer checks this at start.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath

from webtag.atomic import publish
from webtag.remote_copy import download, remove, upload
from webtag.storage import Remote, StorageError, is_url, location, retry_call

from . import checkpoint as ckpt

log = logging.getLogger("pretrain.trainer")
STAGE_ENV = "WEBTAG_STAGE_DIR"
RUN_ID = "webtag-run.json"   # the same run id in the stage and at the URL: the stage is this run's


def stage_for(url: str, stage_dir: str = "") -> Path:
    """The local folder a run at ``url`` is written into."""
    if stage_dir:
        return Path(stage_dir)
    base = Path(os.environ.get(STAGE_ENV) or Path(tempfile.gettempdir()) / "webtag-stage")
    return base / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


def run_folder(output_dir: str, stage_dir: str = "") -> tuple[Path, "RunMirror | None"]:
    """(where the trainer writes, the mirror to the URL or None for a local run folder)."""
    if not is_url(output_dir):
        return Path(output_dir), None
    loc = location(output_dir)
    if not isinstance(loc, Remote):
        from webtag.config import ConfigError
        raise ConfigError(f"train.output_dir={output_dir}: a run folder is a local path or an "
                          "object-store URL, not a pipe: command")
    local = stage_for(loc.url, stage_dir)
    return local, RunMirror(loc, local)


class RunMirror:
    def __init__(self, remote: Remote, local: Path):
        self.remote, self.local = remote, Path(local)
        self._sent: dict[str, tuple[int, int]] = {}   # relative path -> (size, mtime_ns) uploaded

    def __str__(self) -> str:
        return str(self.remote)

    # ---- listing -----------------------------------------------------------------------------
    def _ls(self, url: Remote) -> list[dict]:
        fs = url.fs
        fs.invalidate_cache()   # another process (the killed run) wrote there
        try:
            return retry_call(str(url), lambda: fs.ls(url.rpath, detail=True))
        except FileNotFoundError:
            return []

    def remote_checkpoints(self) -> list[str]:
        """Names of the complete checkpoints at the URL (those with a manifest), oldest first."""
        root = self.remote / "checkpoints"
        names = sorted(PurePosixPath(e["name"]).name for e in self._ls(root) if e.get("type") == "directory")
        steps = [n for n in names if ckpt.STEP_NAME.match(n)]
        return [n for n in steps if retry_call(str(root), lambda n=n: root.fs.exists(f"{root.rpath}/{n}/{ckpt.MANIFEST}"))]

    # ---- which run ----------------------------------------------------------------------------
    def claim(self) -> str:
        """Make the stage the URL's: both hold ``webtag-run.json`` with one run id. A stage left by
        another run of the same URL (the URL deleted and started again, say) is emptied first;
        a new run folder gets a new id, uploaded at once. Returns the id."""
        remote_file, local_file = self.remote / RUN_ID, self.local / RUN_ID
        try:
            remote_id = json.loads(remote_file.read_text())["id"] if remote_file.is_file() else None
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"{remote_file} is damaged ({exc}): not a webtag run folder?") from None
        try:
            local_id = json.loads(local_file.read_text(encoding="utf-8"))["id"] if local_file.is_file() else None
        except (ValueError, KeyError, TypeError):
            local_id = "damaged"
        if local_id is not None and local_id != remote_id:
            log.warning("the stage %s holds another run than %s: emptied", self.local, self.remote)
            shutil.rmtree(self.local)
        elif local_id is None and self.local.is_dir() and any(self.local.iterdir()):
            log.warning("the stage %s holds files of no run of %s: emptied", self.local, self.remote)
            shutil.rmtree(self.local)
        self.local.mkdir(parents=True, exist_ok=True)
        run_id = remote_id or uuid.uuid4().hex
        local_file.write_text(json.dumps({"id": run_id, "url": str(self.remote)}) + "\n", encoding="utf-8")
        if remote_id is None:
            upload(local_file, str(remote_file))
        return run_id

    # ---- pull --------------------------------------------------------------------------------
    def pull(self) -> str | None:
        """Bring the newest complete remote checkpoint (and missing run logs) into the stage.
        Returns the checkpoint's name, or None when the stage already has it or there is none."""
        self.local.mkdir(parents=True, exist_ok=True)
        fs, root = self.remote.fs, self.remote.rpath.rstrip("/")
        fs.invalidate_cache()
        for full in retry_call(str(self.remote), lambda: fs.find(root)):
            rel = PurePosixPath(full[len(root):].lstrip("/"))
            if rel.parts[0] == "checkpoints" or any(part.startswith(".") for part in rel.parts):
                continue
            dest = self.local / rel
            if not dest.exists():   # the stage's own file is as new as the URL's or newer
                download(f"{self.remote}/{rel.as_posix()}", dest)
                st = dest.stat()
                self._sent[rel.as_posix()] = (st.st_size, st.st_mtime_ns)
        got = None
        for name in reversed(self.remote_checkpoints()):
            have = ckpt.checkpoint_root(self.local) / name
            if have.is_dir() and ckpt.damage(have)[0] is None:
                break   # the stage is as new as the URL (the same node, restarted)
            if self._download_checkpoint(name):
                got = name
                break
        return got

    def _download_checkpoint(self, name: str) -> bool:
        src = self.remote / "checkpoints" / name
        final = ckpt.checkpoint_root(self.local) / name
        tmp = final.with_name(f".{name}.pull")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            download(f"{src}/{ckpt.MANIFEST}", tmp / ckpt.MANIFEST)
            listed = json.loads((tmp / ckpt.MANIFEST).read_text(encoding="utf-8")).get("files", {})
            for fname in listed:
                if "/" in fname or fname.startswith("."):
                    raise ValueError(f"the manifest names {fname!r}")
                download(f"{src}/{fname}", tmp / fname)
            what, _ = ckpt.damage(tmp)
            if what:
                raise ValueError(what)
        except (OSError, ValueError) as exc:
            log.warning("checkpoint %s at %s cannot be used (%s): trying an older one", name, self.remote, exc)
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        if final.exists():
            shutil.rmtree(final)
        publish(tmp, final)
        log.info("downloaded checkpoint %s from %s into %s", name, self.remote, final)
        return True

    # ---- push --------------------------------------------------------------------------------
    def push_checkpoint(self, folder: Path) -> None:
        """Upload checkpoint ``folder`` (manifest last), the run's changed files, and delete the
        remote checkpoints that are gone locally."""
        dest = self.remote / "checkpoints" / folder.name
        remove(f"{dest}/{ckpt.MANIFEST}")   # a re-save of the same step is incomplete until the end
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != ckpt.MANIFEST)
        for p in files:
            upload(p, f"{dest}/{p.name}")
        upload(folder / ckpt.MANIFEST, f"{dest}/{ckpt.MANIFEST}")
        self.push_run()
        kept = {p.name for p in ckpt.checkpoint_folders(self.local)}
        for entry in self._ls(self.remote / "checkpoints"):
            name = PurePosixPath(entry["name"]).name
            if entry.get("type") == "directory" and name not in kept:
                remove(f"{self.remote}/checkpoints/{name}/{ckpt.MANIFEST}")
                remove(f"{self.remote}/checkpoints/{name}", recursive=True)

    def push_run(self, last: tuple[str, ...] = ()) -> int:
        """Upload the run folder's files that changed since the last upload (not the checkpoints,
        not hidden files); those named in ``last`` after all others. Returns the count."""
        files = sorted(p for p in self.local.rglob("*") if p.is_file() and not any(
            part.startswith(".") or (i == 0 and part == "checkpoints")
            for i, part in enumerate(p.relative_to(self.local).parts)))
        order = [p for p in files if p.name not in last] + [p for p in files if p.name in last]
        sent = 0
        for p in order:
            rel = p.relative_to(self.local).as_posix()
            st = p.stat()
            if self._sent.get(rel) == (st.st_size, st.st_mtime_ns):
                continue
            upload(p, f"{self.remote}/{rel}")
            self._sent[rel] = (st.st_size, st.st_mtime_ns)
            sent += 1
        return sent


def start(acc, mirror: RunMirror, resume: str) -> None:
    """Every rank, before resuming: the main process pulls from the URL (``train.resume=auto``) and
    leaves a mark in the stage; every rank must see it (one stage for the whole job)."""
    from accelerate.utils import broadcast_object_list, gather_object

    from webtag.config import ConfigError

    msg = [None]
    if acc.is_main_process:
        try:
            mirror.claim()
            if resume == "auto":
                mirror.pull()
            mark = f".stage-{uuid.uuid4().hex}"
            (mirror.local / mark).write_text(mark, encoding="utf-8")
            msg = [(mark, None)]
        except (OSError, StorageError) as exc:
            msg = [(None, f"cannot read the run folder {mirror.remote}: {exc}")]
    mark, error = broadcast_object_list(msg)[0]
    if error:
        raise ConfigError(error)
    path = mirror.local / mark
    seen = path.is_file() and path.read_text(encoding="utf-8") == mark
    blind = [r for r, ok in enumerate(gather_object([seen])) if not ok]
    if acc.is_main_process:
        path.unlink(missing_ok=True)
    if blind:
        raise ConfigError(f"train.stage_dir={mirror.local}: rank(s) {blind} do not see this folder; with a URL "
                          "train.output_dir on several nodes, set train.stage_dir to a folder on a file system "
                          "that every node mounts")
