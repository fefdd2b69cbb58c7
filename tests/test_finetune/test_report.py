"""``python -m finetune report``: curves from a real metrics.csv (written by the trainer's
MetricsLog) and confused pairs from an evaluation result (ClassificationMeter) with val thumbnails
from real val shards; a folder without metrics.csv is refused with one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from finetune.metrics import ClassificationMeter
from pretrain.metrics import MetricsLog

REPO = Path(__file__).resolve().parents[2]


def _run_folder(tmp_path: Path, val: Path, with_val: bool) -> Path:
    run = tmp_path / "run"
    log = MetricsLog(run, tensorboard=False)
    for step in range(1, 11):
        row = {"epoch": step // 5, "loss": 3.0 / step, "lr": 0.1 * step / 10, "images_per_s": 100 + step,
               "data_wait": 0.1}
        if with_val and step % 5 == 0:
            row.update(val_top1=0.1 * step / 5, val_top5=0.2 * step / 5, val_top1_balanced=0.09 * step / 5)
        log.log(step, row)
    log.close()
    meter = ClassificationMeter(8)
    scores = torch.full((6, 8), -1.0)
    labels = torch.tensor([0, 0, 0, 1, 2, 3])
    for i, predicted in enumerate([1, 1, 0, 1, 0, 3]):   # 0 -> 1 twice, 2 -> 0 once
        scores[i, predicted] = 1.0
    meter.update(scores, labels)
    (run / "best").mkdir()
    (run / "best" / "eval-val.json").write_text(json.dumps({**meter.result(), "shards": str(val)}))
    return run


def report(*args):
    return subprocess.run([sys.executable, "-m", "finetune", "report", *args], cwd=REPO, capture_output=True, text=True)


def test_curves_confusions_and_thumbnails(shards_v1, tmp_path):
    run = _run_folder(tmp_path, shards_v1 / "val", with_val=True)
    proc = report("--run", str(run))
    assert proc.returncode == 0, proc.stderr
    page = run / "report" / "index.html"
    assert proc.stdout.strip() == str(page)
    files = sorted(p.name for p in page.parent.iterdir())
    assert files == ["data_wait.png", "images_per_s.png", "index.html", "loss.png", "lr.png", "thumbs", "val.png"]
    html = page.read_text()
    assert html.index("0 &rarr;") < html.index("2 &rarr;")   # most confused first: 0 -> 1 (x2), then 2 -> 0
    assert "2 images" in html and "val_top1_balanced" in html
    thumbs = list((page.parent / "thumbs").glob("*.jpg"))
    assert thumbs and all(f"thumbs/{t.name}" in html for t in thumbs)
    assert report("--run", str(run)).returncode == 0    # a second report replaces the first


def test_without_val_columns_and_refusals(shards_v1, tmp_path):
    run = _run_folder(tmp_path, shards_v1 / "val", with_val=False)
    assert report("--run", str(run)).returncode == 0
    assert not (run / "report" / "val.png").exists() and (run / "report" / "loss.png").is_file()
    proc = report("--run", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "metrics.csv does not exist" in proc.stderr
