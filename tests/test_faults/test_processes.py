"""Processes, for real: SIGKILL of the main process of ``text_mining run`` and ``pipeline shard``
(2 pool workers) mid-run. No worker survives it; an immediate rerun into the same --out succeeds
and writes what an uninterrupted run writes; a second run into a folder in use is refused with
exit 2 and one line naming the holder; parts of a Slurm array share the folder."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import psutil
import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CONFIG, REPO
from webtag.lock import LOCK_DIR, FOLDER_LOCK, LockHeld, RunLock, part_name

ENV = dict(os.environ, OMP_NUM_THREADS="1", WEBTAG_LOG="WARNING")


def _start(args, log):
    return subprocess.Popen([sys.executable, "-m", *map(str, args)], cwd=REPO, env=ENV, stdout=log,
                            stderr=subprocess.STDOUT)


def _wait_for(cond, proc, what, timeout=120):
    deadline = time.time() + timeout
    while not cond():
        assert proc.poll() is None, f"the run ended before {what} (rc {proc.returncode})"
        assert time.time() < deadline, f"no {what} in {timeout}s"
        time.sleep(0.01)


def _holder(out):
    try:
        return json.loads((out / LOCK_DIR / FOLDER_LOCK).read_text())
    except (OSError, ValueError):
        return None


def _kill_main_mid_run(args, started, log):
    """Start ``args``, SIGKILL its main process once ``started()`` (its pool is at work); returns
    the workers that were running then."""
    proc = _start(args, log)
    try:
        _wait_for(started, proc, "the first finished part")
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2, workers
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    return workers


def _assert_gone(workers, timeout=5):
    gone, alive = psutil.wait_procs(workers, timeout=timeout)
    for p in alive:
        p.kill()
    assert not alive, f"pool workers {[p.pid for p in alive]} outlived their killed main process"


def _refused_while_held(args, out, log):
    """Start ``args`` again, stop it (SIGSTOP) once it holds the lock, check that one more run is
    refused naming it, let it go on; returns its exit status."""
    proc = _start(args, log)
    try:
        _wait_for(lambda: (_holder(out) or {}).get("pid") == proc.pid, proc, "the lock")
        os.kill(proc.pid, signal.SIGSTOP)
        res = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=REPO, env=ENV, capture_output=True,
                             text=True, timeout=120)
        os.kill(proc.pid, signal.SIGCONT)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        assert lines[0].startswith(f"error: {out} is in use by pid {proc.pid} on {socket.gethostname()} (since ")
        return proc.wait(300)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()


def test_text_mining_run_killed_then_rerun_at_once(example_v1, mined_v1, tmp_path):
    out = tmp_path / "mined"
    args = ["text_mining", "run", "--webvision", example_v1, "--out", out, "--workers", 2, "--num-parts", 16,
            "--config", EXAMPLE_CONFIG]
    log = open(tmp_path / "run.log", "w")
    workers = _kill_main_mid_run(args, lambda: any((out / "_work" / "count").glob("part-*")), log)
    _assert_gone(workers)
    assert _refused_while_held(args, out, log) == 0, (tmp_path / "run.log").read_text()[-3000:]
    for name in ("images.parquet", "vocabulary.parquet", "classes.parquet"):
        assert pq.read_table(out / name).to_pydict() == pq.read_table(mined_v1 / name).to_pydict(), name


def test_pipeline_shard_killed_then_rerun_at_once(example_v1, mined_v1, tmp_path):
    from pipeline import schema
    from pipeline.shards import ShardConfig, shard_all

    out = tmp_path / "shards"
    args = ["pipeline", "shard", "--webvision", example_v1, "--labels", mined_v1, "--out", out, "--workers", 2,
            "--num-parts", 8, "--max-size", "100KB"]
    log = open(tmp_path / "shard.log", "w")
    workers = _kill_main_mid_run(args, lambda: any((out / "train" / "_parts").glob("part-*.json")), log)
    _assert_gone(workers)
    assert _refused_while_held(args, out, log) == 0, (tmp_path / "shard.log").read_text()[-3000:]
    whole = tmp_path / "whole"
    shard_all(example_v1, mined_v1, whole, ShardConfig(max_size=100_000), workers=1, num_parts=8)
    for split in ("train", "val"):
        sizes = schema.read_sizes(whole / split)
        assert schema.read_sizes(out / split) == sizes
        for name in sizes:
            assert (out / split / name).read_bytes() == (whole / split / name).read_bytes(), name
        assert not [p.name for p in (out / split).iterdir() if ".tmp-" in p.name]


def test_array_parts_share_the_folder_and_exclude_the_rest(example_v1, tmp_path):
    out = tmp_path / "mined"
    a = RunLock(out, "text_mining count", part_name("count", 0, 2)).acquire()
    b = RunLock(out, "text_mining count", part_name("count", 1, 2)).acquire()   # another array task
    try:
        with pytest.raises(LockHeld, match=rf"\(count-part-00000-of-00002\) is in use by pid {os.getpid()} "):
            RunLock(out, "text_mining count", part_name("count", 0, 2), wait_s=0).acquire()
        res = subprocess.run([sys.executable, "-m", "text_mining", "vocabulary", "--webvision", str(example_v1),
                              "--out", str(out), "--config", str(EXAMPLE_CONFIG)], cwd=REPO, env=ENV,
                             capture_output=True, text=True)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert res.stderr.startswith(f"error: {out} is in use by pid {os.getpid()} on {socket.gethostname()} "
                                     f"(since "), res.stderr
        assert "text_mining count count-part-0000" in res.stderr
    finally:
        a.release()
        b.release()
    with RunLock(out, "text_mining vocabulary", wait_s=0):   # the parts are done: the reduce step goes
        with pytest.raises(LockHeld, match="text_mining vocabulary"):
            RunLock(out, "text_mining tag", part_name("tag", 0, 2), wait_s=0).acquire()


HOLDER = textwrap.dedent("""
    import os, sys, time
    from webtag.lock import RunLock
    RunLock(sys.argv[1], "holder").acquire()
    if os.fork() == 0:          # a worker: it holds the lock with its parent
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1), os.dup2(null, 2)   # not the caller's pipes
        time.sleep(60)
        os._exit(0)
    print("locked", flush=True)
    os._exit(0)                 # the holder is gone, its worker is not
""")


def test_a_gone_holder_whose_workers_live_on_is_waited_for_then_named(tmp_path):
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(script), str(out)], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == "locked", proc.stderr
    holder = _holder(out)
    orphans = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and str(script) in p.info["cmdline"]]
    assert len(orphans) == 1
    try:
        t = time.monotonic()
        with pytest.raises(LockHeld, match=f"pid {holder['pid']} .*that process is gone but processes it started"):
            RunLock(out, "rerun", wait_s=1).acquire()
        assert time.monotonic() - t >= 1
        killer = subprocess.Popen(["bash", "-c", f"sleep 0.5; kill -9 {orphans[0].pid}"])
        with RunLock(out, "rerun", wait_s=10):   # waits for the orphan's end, then goes ahead
            assert _holder(out)["pid"] == os.getpid()
        killer.wait()
    finally:
        for p in orphans:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
