"""bench/stop_check.py keeps working: two gloo processes, a few steps (the figures are not checked,
only that both settings were measured and the ratio is theirs)."""
import json
import subprocess
import sys

from conftest import REPO


def test_stop_check_bench_runs_on_two_cpu_processes():
    res = subprocess.run([sys.executable, str(REPO / "bench" / "stop_check.py"), "--processes", "2", "--steps", "5",
                          "--rounds", "1", "--width", "16", "--batch", "4"],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    line = [l for l in res.stdout.splitlines() if l.startswith("{")][-1]
    figures = json.loads(line)
    with_check, without = figures["steps_per_s_check_every_1"], figures["steps_per_s_check_every_0"]
    assert figures["processes"] == 2 and with_check > 0 and without > 0
    assert abs(figures["ratio"] - with_check / without) < 0.01
