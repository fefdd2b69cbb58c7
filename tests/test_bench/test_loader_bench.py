"""bench/loader.py keeps working (tiny generated data; the figures are not checked, only reported)."""
import re
import subprocess
import sys

from conftest import REPO


def test_loader_bench_runs(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "bench" / "loader.py"), "--classes", "4",
                          "--images-per-class", "12", "--batch", "8", "--image-size", "32",
                          "--workers", "1", "--repeats", "2", "--epochs", "2", "--shard-count", "10",
                          "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert re.search(r"shard writer: \d+ images/s/core", out)
    ratios = re.search(r"-> ([\d.]+) of the plain loop around it \(median; ([\d.]+)-([\d.]+)\)", out)
    assert ratios, out
    lo, hi = float(ratios.group(2)), float(ratios.group(3))
    assert 0 < lo <= float(ratios.group(1)) <= hi
    assert re.search(r"peak memory \(PSS, main \+ workers\): \d+ MiB", out)
    tars = re.search(r"tar reader, members/s .*: ours (\d+), tarfile stream (\d+) \(([\d.]+)x\), "
                     r"webdataset tar_file_iterator (\d+) \(([\d.]+)x\)", out)
    assert tars, out
    assert all(int(tars.group(i)) > 0 for i in (1, 2, 4))
