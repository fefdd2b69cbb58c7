"""The generated example that the shard-writer and loader benchmarks measure on: a release made by
webvision_example and its text-mining output (configs/text_mining/example.yaml), each made once in
the benchmark's work folder and reused by reruns."""
from __future__ import annotations

import os
from pathlib import Path

from text_mining.config import TextMiningConfig
from text_mining.runner import run_all
from webtag.config import load_config
from webvision_example import make_example

REPO = Path(__file__).resolve().parents[1]


def example_release(root: Path, mined: Path, classes: int, images_per_class: int) -> None:
    """Make ``root`` (the release) and ``mined`` (its labels) unless a previous run left them."""
    if not (root / "README.txt").exists():
        make_example(root, classes=classes, images_per_class=images_per_class, seed=0)
    if not (mined / "report.json").exists():
        cfg = load_config(TextMiningConfig, REPO / "configs" / "text_mining" / "example.yaml")
        run_all(root, mined, cfg, workers=os.cpu_count() or 1)
