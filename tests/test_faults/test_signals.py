"""Preemption and time limits, for real: SIGTERM to a training's whole process group (what Slurm
sends on preemption, scancel and the time limit, SIGKILL following after KillWait, 30 s) with
DataLoader workers running. The run saves a checkpoint at the next optimizer step (not at the
next log point, ``train.log_every`` is long here), exits 0 with status "stopped", and the resumed
run ends at the same final step as an uninterrupted one. The loader's workers ignore the signal
but still go when the loader closes them or their main process is killed."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

from conftest import PRETRAIN_EXAMPLE, REPO, pretrain_overrides
from pretrain import checkpoint as ckpt
from pretrain.control import CONTROL_ENV
from pretrain.trainer import FINISHED

KILL_WAIT = 30   # Slurm's default KillWait: what is not done by then is SIGKILLed


def _env(control, **extra):
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", WEBTAG_LOG="INFO",
                WEBTAG_LOG_OTHER_RANKS="INFO", **{CONTROL_ENV: str(control)}, **extra)


def _wait_training(proc, out, ranks, log, rows=3, timeout=120):
    """Until every rank has recorded ``rows`` batches in its shard audit log (training is under way)."""
    deadline = time.time() + timeout

    def rows_of(r):
        path = out / f"shards-rank{r}.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0

    while not all(rows_of(r) >= rows for r in range(ranks)):
        assert proc.poll() is None, f"the run ended before the signal (rc {proc.returncode}):\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.02)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_tree(pid):
    for p in _tree(pid)[::-1]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def _tree(pid):
    p = psutil.Process(pid)
    return [p] + p.children(recursive=True)


def _stopped_steps(text):
    return [int(ln.split("checkpoint saved at step ")[1].split(",")[0])
            for ln in text.splitlines() if "stop requested (SIGTERM)" in ln]


def test_sigterm_to_the_process_group_checkpoints_stops_and_resumes(shards_v1, mined_v1, tmp_path):
    out, control, log = tmp_path / "run", tmp_path / "control", tmp_path / "first.log"
    total = 150
    overrides = pretrain_overrides(shards_v1, mined_v1, out, f"train.max_steps={total}", "loader.batch_size=4",
                                   "loader.workers=2", "train.log_every=1000", "train.checkpoint_every=0")
    cmd = [sys.executable, "-m", "pretrain", "train", "--config", str(PRETRAIN_EXAMPLE), *overrides]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(control), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_training(proc, out, 1, log)
        assert len(_tree(proc.pid)) >= 3, "the training and its two loader workers"
        t = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)          # every process of the group: workers included
        rc = proc.wait(KILL_WAIT)
        took = time.monotonic() - t
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "killed by signal" not in text
    assert (control / "status").read_text().strip() == "stopped"
    saved = ckpt.list_checkpoints(out)
    assert len(saved) == 1, text[-3000:]
    step = ckpt.read_state(saved[0])["step"]
    assert 0 < step < total and _stopped_steps(text) == [step]
    assert step % 1000 and step % 5   # not a log point: the per-step check stopped it
    assert took < 20, f"stopped {took:.1f}s after the signal"
    assert not (out / FINISHED).exists()

    res = subprocess.run(cmd, cwd=REPO, env=_env(control), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resumed from {saved[0]}: step {step}" in res.stderr
    assert (control / "status").read_text().strip() == "finished"
    assert json.loads((out / FINISHED).read_text())["step"] == total   # where an uninterrupted run ends


def test_two_ranks_agree_on_the_step_after_sigterm(shards_v1, mined_v1, tmp_path):
    """accelerate launch, 2 CPU processes (gloo): SIGTERM to the launcher's group, which passes it
    on to each rank's process group (torchrun's workers run in sessions of their own), so the
    ranks get it at different moments; they stop at the same step, both having saved their part."""
    out, control, log = tmp_path / "run", tmp_path / "control", tmp_path / "launch.log"
    total = 120
    overrides = pretrain_overrides(shards_v1, mined_v1, out, f"train.max_steps={total}", "loader.batch_size=4",
                                   "loader.workers=1", "train.log_every=1000", "train.checkpoint_every=0")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--main_process_port", str(_free_port()), "--mixed_precision", "no",
           "--dynamo_backend", "no", str(REPO / "pretrain" / "main.py"), "--config", str(PRETRAIN_EXAMPLE),
           *overrides]
    env = _env(control, ACCELERATE_USE_CPU="1")
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_training(proc, out, 2, log, timeout=180)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(KILL_WAIT + 10)   # torchrun gives its workers 30 s after passing the signal on
    finally:
        if proc.poll() is None:
            _kill_tree(proc.pid)
    text = log.read_text()
    assert "killed by signal" not in text
    assert (control / "status").read_text().strip() == "stopped", text[-4000:]
    steps = _stopped_steps(text)
    assert len(steps) == 2 and steps[0] == steps[1], text[-4000:]   # rank 0 and rank 1, the same step
    saved = ckpt.list_checkpoints(out)
    assert [p.name for p in saved] == [ckpt.checkpoint_name(steps[0])] and steps[0] < total

    env["ACCELERATE_USE_CPU"] = "1"
    cmd[cmd.index("--main_process_port") + 1] = str(_free_port())
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert json.loads((out / FINISHED).read_text())["step"] == total


LOADER_SCRIPT = textwrap.dedent("""
    import sys, time
    from pipeline.loader import LoaderConfig, ShardLoader
    cfg = LoaderConfig(batch_size=4, workers=2, image_size=32, train=True)
    loader = ShardLoader(sys.argv[1], cfg)
    for i, batch in enumerate(loader):
        if i == 2:
            print("ready", flush=True)
        time.sleep(0.05 if i < 2 else 3600)   # the workers fill their buffers and wait
""")


def test_a_sigterm_while_loader_workers_start_kills_none(shards_v1, monkeypatch):
    """A TERM that reaches a worker between its fork and its worker_init_fn (a preemption as an
    epoch starts; the CI once hit this window under load): each worker sends itself TERM and INT
    before its init runs. Blocked since the fork, they are dropped once the worker ignores them."""
    from pipeline.loader import LoaderConfig, ShardLoader, shard_loader

    real_init = shard_loader._WorkerInit.__call__

    def term_first(self, worker_id):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)   # delivered by now, unless blocked
        real_init(self, worker_id)

    monkeypatch.setattr(shard_loader._WorkerInit, "__call__", term_first)
    loader = ShardLoader(shards_v1 / "train", LoaderConfig(batch_size=4, workers=2, image_size=32, train=True))
    try:
        assert sum(1 for _ in loader) == len(loader)
        workers = [p for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE]
        assert len(workers) == 2 and all(w.is_running() for w in workers)
    finally:
        loader.close()
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN   # the main process's own handlers
    assert not signal.pthread_sigmask(signal.SIG_BLOCK, set()) & {signal.SIGTERM, signal.SIGINT}


def test_loader_workers_ignore_sigterm_and_die_with_their_main_process(shards_v1, tmp_path):
    from pipeline.loader import LoaderConfig, ShardLoader

    # in this process: SIGTERM to the workers leaves them and the epoch whole; close() ends them
    loader = ShardLoader(shards_v1 / "train", LoaderConfig(batch_size=4, workers=2, image_size=32, train=True))
    n = len(loader)
    it = iter(loader)
    next(it)
    me = psutil.Process()
    workers = [p for p in me.children() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert len(workers) == 2
    for w in workers:
        os.kill(w.pid, signal.SIGTERM)
        os.kill(w.pid, signal.SIGINT)
    assert sum(1 for _ in it) == n - 1
    assert all(w.is_running() for w in workers)   # streaming on into the next epoch
    loader.close()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "close() left workers running"

    # a main process killed without warning: its workers, blocked on full buffers, notice and exit
    script = tmp_path / "loader_main.py"
    script.write_text(LOADER_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(shards_v1 / "train")], cwd=REPO,
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    workers = []
    try:
        assert proc.stdout.readline().strip() == "ready"
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2
        proc.kill()
        proc.wait()
        gone, alive = psutil.wait_procs(workers, timeout=15)   # the ring checks its parent every second
        assert not alive, f"workers {[p.pid for p in alive]} outlived their main process"
    finally:
        proc.kill()
        for p in workers:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
