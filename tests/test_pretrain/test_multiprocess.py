"""Real multi-process Accelerate on gloo: two "machines" on loopback (num_machines=2, machine_rank
0 and 1), killed mid-epoch with SIGKILL and started again: it resumes from the last checkpoint,
ends at the same step as an uninterrupted run, and no shard is read twice in an epoch."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import PRETRAIN_EXAMPLE, REPO, machine_command, pretrain_overrides
from pretrain import checkpoint as ckpt
from pretrain.trainer import FINISHED


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_machines(overrides, log_dir, tag):
    port = free_port()
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", WEBTAG_LOG="INFO")
    procs = []
    for rank in (0, 1):
        cmd = machine_command(rank, port, overrides)
        log = open(log_dir / f"{tag}-machine{rank}.log", "w")
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
    return procs


def descendants(pid: int) -> list[int]:
    """pid and every process below it (torchrun's workers live in their own sessions)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def kill_tree(pid: int) -> None:
    for p in descendants(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def logs(log_dir):
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(log_dir.glob("*.log")))


def wait_all(procs, log_dir, timeout=300):
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                kill_tree(q.pid)
            pytest.fail("the 2-machine run did not finish in time\n" + logs(log_dir))
    assert all(p.returncode == 0 for p in procs), logs(log_dir)


def test_two_machines_killed_mid_epoch_resume_without_repeats(shards_v1, mined_v1, tmp_path):
    out, log_dir = tmp_path / "run", tmp_path / "logs"
    log_dir.mkdir()
    overrides = pretrain_overrides(shards_v1, mined_v1, out, "train.epochs=3", "loader.batch_size=4",
                                   "loader.shuffle_buffer=8", "train.checkpoint_every=2", "train.log_every=2",
                                   "train.keep_checkpoints=50")
    procs = launch_two_machines(overrides, log_dir, "first")
    deadline = time.time() + 240

    def mid_epoch_checkpoint():   # one that has consumed shards of epoch 0, not all
        for path in ckpt.list_checkpoints(out):
            state = ckpt.read_state(path)
            if state["loader"]["epoch"] == 0 and state["loader"]["consumed"]:
                return True
        return False

    while not mid_epoch_checkpoint():
        assert time.time() < deadline and all(p.poll() is None for p in procs), logs(log_dir)
        time.sleep(0.05)
    doomed = [q for p in procs for q in descendants(p.pid)]
    for p in doomed:                     # kill both machines, workers included, without warning
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in procs:
        p.wait()
    deadline = time.time() + 30
    while any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split(") ")[1][0] != "Z"
              for p in doomed):
        assert time.time() < deadline, "the killed workers did not go away"
        time.sleep(0.1)
    assert not (out / FINISHED).exists()
    first_state = ckpt.read_state(ckpt.list_checkpoints(out)[-1])
    killed_at = first_state["step"]
    total = first_state["total_steps"]
    assert 0 < killed_at < total
    consumed_at_kill = set(first_state["loader"]["consumed"])

    procs = launch_two_machines(overrides, log_dir, "second")
    wait_all(procs, log_dir)
    text = (log_dir / "second-machine0.log").read_text()
    assert f"resumed from {out / 'checkpoints' / ckpt.checkpoint_name(killed_at)}" in text
    assert "2 processes (DistributedType.MULTI_CPU)" in text
    assert json.loads((out / FINISHED).read_text())["step"] == total

    # the data: two ranks with disjoint shards; per epoch no shard twice; the first epoch complete
    train_shards = sorted(s for s in json.loads((shards_v1 / "train" / "sizes.json").read_text()))[:-1]
    per_epoch: dict[int, list] = {}
    ranks: dict[int, set] = {0: set(), 1: set()}
    for r in (0, 1):
        for line in (out / f"shards-rank{r}.jsonl").read_text().splitlines():
            row = json.loads(line)
            per_epoch.setdefault(row["epoch"], []).extend(row["shards"])
            if row["epoch"] == 0:
                ranks[r].update(row["shards"])
    for epoch, shards in per_epoch.items():
        assert len(shards) == len(set(shards)), f"epoch {epoch} read a shard twice: {sorted(shards)}"
    assert sorted(per_epoch[0]) == train_shards
    assert ranks[0] and ranks[1] and not ranks[0] & ranks[1]
    # the first epoch was interrupted: part of it came before the kill, part after
    steps0 = [json.loads(ln)["step"] for r in (0, 1)
              for ln in (out / f"shards-rank{r}.jsonl").read_text().splitlines() if json.loads(ln)["epoch"] == 0]
    assert min(steps0) <= killed_at < max(steps0)
    if first_state["loader"]["epoch"] == 0:
        assert consumed_at_kill and consumed_at_kill < set(per_epoch[0])


def test_multigrain_beta_stays_identical_on_both_ranks(shards_v1, mined_v1, tmp_path):
    """MultiGrain's beta is one learnable scalar of the method, outside the DDP model: after
    training steps on 2 real processes (different data on each) it has moved and is the same on
    both ranks (issue 15, item 3)."""
    import re
    out, log_path = tmp_path / "run", tmp_path / "mg.log"
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", WEBTAG_LOG="INFO",
               WEBTAG_LOG_OTHER_RANKS="INFO")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no",
           "--dynamo_backend", "no", str(REPO / "pretrain" / "main.py"), "--config", str(PRETRAIN_EXAMPLE),
           *pretrain_overrides(shards_v1, mined_v1, out, "train.max_steps=6", "loader.batch_size=8",
                               "loader.repeat_aug=2", "loader.shuffle_buffer=8", "loss.margin_lambda=0.5",
                               "optim.lr=0.5", "optim.warmup_steps=0", "train.log_every=3", "train.checkpoint_every=0")]
    with open(log_path, "w") as fh:
        res = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=300)
    text = log_path.read_text()
    assert res.returncode == 0, text[-4000:]
    betas = dict(re.findall(r"rank (\d): criterion margin_beta (-?[0-9.]+)", text))
    assert set(betas) == {"0", "1"}, text[-4000:]
    assert betas["0"] == betas["1"]
    assert float(betas["0"]) != pytest.approx(1.2, abs=1e-6)   # it learned
