"""bench/release_tars.py keeps working (tiny generated data; the figures are reported, not checked)."""
import re
import subprocess
import sys

from conftest import REPO


def test_release_tars_bench_runs(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "bench" / "release_tars.py"), "--classes", "3",
                          "--images-per-class", "8", "--archives", "2", "--repeats", "1",
                          "--validate", "fast", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("files", "archives"):
        assert re.search(rf"shard writer from {name}: \d+ images/s/core \(CPU\), \d+ images/s \(wall\)", res.stdout)
    assert re.search(r"archives / files: [\d.]+ per CPU-second, [\d.]+ per wall-second; same samples: True",
                     res.stdout), res.stdout
