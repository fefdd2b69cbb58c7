"""bench/loader.py keeps working (tiny generated data; the figures are not checked, only reported)."""
import re
import subprocess
import sys

from conftest import REPO


def test_loader_bench_runs(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "bench" / "loader.py"), "--classes", "4",
                          "--images-per-class", "12", "--batch", "8", "--image-size", "32",
                          "--workers", "1", "--repeats", "2", "--epochs", "2", "--shard-count", "10",
                          "--read-ahead", "3", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert re.search(r"shard writer: \d+ images/s/core", out)
    assert ", read-ahead 3, 1 worker processes" in out, out
    ratios = re.search(r"-> ([\d.]+) of the plain loop around it \(median; ([\d.]+)-([\d.]+)\)", out)
    assert ratios, out
    lo, hi = float(ratios.group(2)), float(ratios.group(3))
    assert 0 < lo <= float(ratios.group(1)) <= hi
    assert re.search(r"peak memory \(PSS, main \+ workers\): \d+ MiB", out)
    later = re.search(r"the epochs after the first .*-> ([\d.]+) \(([\d.]+)-([\d.]+)\).*"
                      r"CPU per image (\d+) us -> plain / loader ([\d.]+)", out)
    assert later, out
    assert 0 < float(later.group(2)) <= float(later.group(1)) <= float(later.group(3))
    assert int(later.group(4)) > 0 and float(later.group(5)) > 0
    inproc = re.search(r"the workers' code in this process .*CPU per image (\d+) us -> plain / in-process ([\d.]+) "
                       r"\(([\d.]+)-([\d.]+)\).*the sample stream alone .*: ([\d.]+) us per sample", out)
    assert inproc, out
    assert int(inproc.group(1)) > 0 and 0 < float(inproc.group(3)) <= float(inproc.group(2)) <= float(inproc.group(4))
    assert float(inproc.group(5)) > 0
    tars = re.search(r"tar reader, members/s .*: ours (\d+), tarfile stream (\d+) \(([\d.]+)x\), "
                     r"webdataset tar_file_iterator (\d+) \(([\d.]+)x\)", out)
    assert tars, out
    assert all(int(tars.group(i)) > 0 for i in (1, 2, 4))


def test_loader_bench_on_real_jpegs_reports_each_validate_mode(tmp_path):
    """--images DIR: the training images replaced by real photos (matplotlib ships one)."""
    import matplotlib
    from pathlib import Path
    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "grace_hopper.jpg").write_bytes(photo.read_bytes())
    res = subprocess.run([sys.executable, str(REPO / "bench" / "loader.py"), "--classes", "3",
                          "--images-per-class", "6", "--batch", "4", "--image-size", "32",
                          "--workers", "1", "--repeats", "1", "--epochs", "1", "--shard-count", "10",
                          "--workdir", str(tmp_path / "work"), "--images", str(photos)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "real JPEGs of" in res.stdout, res.stdout
    modes = re.search(r"by --validate: full (\d+) \([\d.]+x the plain PIL loop\), fast (\d+) .*none (\d+) .*"
                      r"plain PIL loop \(read \+ full decode\) (\d+) images per CPU-second", res.stdout)
    assert modes and all(int(modes.group(i)) > 0 for i in range(1, 5)), res.stdout
