"""bench/train_throughput.py keeps working on CPU (a tiny model and data; the figures are not checked)."""
import json
import subprocess
import sys

from conftest import REPO


def test_train_throughput_bench_runs_on_cpu(tmp_path):
    out = tmp_path / "figures.json"
    res = subprocess.run([sys.executable, str(REPO / "bench" / "train_throughput.py"), "--model", "test_resnet",
                          "--batch", "8", "--image-size", "64", "--images", "96", "--classes", "12",
                          "--keywords", "60", "--steps", "3", "--warmup", "1", "--workers", "1",
                          "--workdir", str(tmp_path), "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ratio real / synthetic" in res.stdout
    figures = json.loads(out.read_text())
    assert figures["real"] > 0 and figures["loader_alone"] > 0 and len(figures["synthetic"]) == 2
    assert figures["ratio"] == figures["real"] / max(figures["synthetic"])
