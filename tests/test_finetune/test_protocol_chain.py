"""The WebVision protocol through the command lines on the example, on CPU: shard train, val, test
and an ImageNet-val-style folder -> finetune -> predict on test and val (names and order of the
lists) -> evaluate on val and imagenet_val with balanced metrics (checked against the submission's
own top-5 and the list's labels) -> knn-eval of the run and of no pretraining."""
import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import REPO
from test_chain import metrics, run

FINETUNE = REPO / "configs" / "finetune" / "example.yaml"


def list_entries(path):
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def balanced_top5(lines, labels):
    """The challenge's figure by hand: per class, the share of its images whose class is among the
    line's 5 ids; the mean over the classes present."""
    hits, counts = {}, {}
    for (name, *ids), y in zip(lines, labels):
        counts[y] = counts.get(y, 0) + 1
        hits[y] = hits.get(y, 0) + (str(y) in ids)
    return sum(hits[c] / counts[c] for c in counts) / len(counts), len(counts)


def imagenet_folder(example, mined, out):
    """A folder per wnid (ImageFolder layout) from the example's val images, with the wnids of the
    class list; one synset the release does not have."""
    classes = pq.read_table(mined / "classes.parquet", columns=["class_id", "wnid"]).to_pydict()
    wnid = dict(zip(classes["class_id"], classes["wnid"]))
    for i, (name, cls) in enumerate(list_entries(example / "info" / "val_filelist.txt")):
        d = out / wnid[int(cls)]
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(example / "val_images_256" / name, d / f"ILSVRC2012_val_{i + 1:08d}.JPEG")
    (out / "n99999999").mkdir()
    shutil.copy(example / "val_images_256" / "val000001.jpg", out / "n99999999" / "ILSVRC2012_val_00009999.JPEG")
    return wnid


def test_webvision_protocol_from_shards_to_submission(example_v1, mined_v1, tmp_path):
    shards, ft = tmp_path / "shards", tmp_path / "ft"
    run("pipeline", "shard", "--webvision", example_v1, "--labels", mined_v1, "--out", shards, "--split", "all",
        "--max-size", "100KB", "--workers", "1")
    assert (shards / "test" / "sizes.json").is_file()
    inet = tmp_path / "imagenet_val"
    imagenet_folder(example_v1, mined_v1, inet)
    run("pipeline", "shard", "--webvision", example_v1, "--labels", mined_v1, "--out", shards,
        "--imagenet-val", inet, "--workers", "1")

    run("finetune", "train", "--config", FINETUNE, "init=", f"data.shards={shards}", f"data.labels={mined_v1}",
        f"train.output_dir={ft}", "train.max_steps=4", "train.eval_every=4", "train.progress=false",
        "train.tensorboard=false")
    row = [r for r in metrics(ft) if r.get("val_top1")][-1]
    assert {"val_top1_balanced", "val_top5_balanced", "val_classes_evaluated"} <= set(row)
    with open(ft / "val-per-class.csv", newline="") as fh:
        per_class = list(csv.DictReader(fh))
    assert sum(int(r["count"]) for r in per_class) == 24 and all(r["wnid"].startswith("n") for r in per_class)

    # test: one line per entry of test_filelist.txt, in its order, keyed by its names
    sub = tmp_path / "test-submission.txt"
    out = run("finetune", "predict", "--checkpoint", ft, "--shards", shards, "--split", "test", "--out", sub,
              "--probs", tmp_path / "test-probs.npz", "--workers", "1")
    test_list = [e[0] for e in list_entries(example_v1 / "info" / "test_filelist.txt")]
    lines = [ln.split() for ln in sub.read_text().splitlines()]
    assert [ln[0] for ln in lines] == test_list and all(len(ln) == 6 for ln in lines)
    assert f"{len(test_list)} predictions -> {sub}" in out
    result = json.loads((tmp_path / "test-submission.json").read_text())
    assert result["split"] == "test" and result["images"] == len(test_list)
    assert result["models"][0]["image_size"] == 64 and result["models"][0]["crop_pct"] == 0.875
    probs = np.load(tmp_path / "test-probs.npz")
    assert list(probs["names"]) == test_list and probs["class_ids"].shape == (len(test_list), 5)
    assert [list(map(str, r)) for r in probs["class_ids"]] == [ln[1:] for ln in lines]
    assert np.all(np.diff(probs["scores"], axis=1) <= 0)

    # a shard of the test split missing: one line naming the gap, exit 2, no submission
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    sorted((broken / "test").glob("*.tar"))[-1].unlink()
    res = subprocess.run([sys.executable, "-m", "finetune", "predict", "--checkpoint", str(ft), "--shards", str(broken),
                          "--split", "test", "--out", str(tmp_path / "broken.txt"), "--workers", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    errors = [ln for ln in res.stderr.splitlines() if "ERROR" in ln]
    assert res.returncode == 2 and len(errors) == 1 and "have no prediction (list lines" in errors[0]
    assert "Traceback" not in res.stderr and not (tmp_path / "broken.txt").exists()

    # val: the submission's names are the list's, and evaluate's balanced top-5 is the hand figure
    val_list = list_entries(example_v1 / "info" / "val_filelist.txt")
    vsub = tmp_path / "val-submission.txt"
    run("finetune", "predict", "--checkpoint", ft, "--shards", shards, "--split", "val", "--out", vsub, "--workers", "1")
    vlines = [ln.split() for ln in vsub.read_text().splitlines()]
    assert [ln[0] for ln in vlines] == [e[0] for e in val_list]
    out = run("finetune", "evaluate", "--checkpoint", ft, "--shards", shards, "--workers", "1")
    ev = json.loads((ft / "eval-val.json").read_text())
    expected, classes = balanced_top5(vlines, [int(e[1]) for e in val_list])
    assert ev["top5_balanced"] == pytest.approx(expected) and ev["classes_evaluated"] == classes
    assert ev["classes_absent"] == 8 - classes and f"top-5 {ev['top5_balanced']:.4f}" in out
    assert (ft / "eval-val-per-class.csv").is_file()

    # imagenet_val: read like val; the synset the release lacks is not there
    run("finetune", "evaluate", "--checkpoint", ft, "--shards", shards, "--split", "imagenet_val", "--workers", "1")
    inet_ev = json.loads((ft / "eval-imagenet_val.json").read_text())
    assert inet_ev["images"] == 24
    assert inet_ev["top1"] == pytest.approx(ev["top1"]) and inet_ev["top5_balanced"] == pytest.approx(ev["top5_balanced"])

    # k-NN on frozen features: the run, and the same architecture without training
    out = run("finetune", "knn-eval", "--checkpoint", ft, "--train", shards / "train", "--eval", shards / "val",
              shards / "imagenet_val", "--k", "5", "20", "--linear-probe", "--probe-epochs", "2", "--workers", "1")
    knn = json.loads((ft / "knn-eval.json").read_text())
    figs = knn["eval"][str(shards / "val")]
    assert set(figs) == {"knn@5", "knn@20", "linear_probe"} and figs["knn@20"]["images"] == 24
    assert knn["train_images"] == 128 and knn["image_size"] == 64
    assert knn["eval"][str(shards / "imagenet_val")]["knn@20"] == figs["knn@20"]   # the same images
    none = tmp_path / "knn-none.json"
    run("finetune", "knn-eval", "--checkpoint", "none", "--model", "test_resnet", "--image-size", "64",
        "--train", shards / "train", "--eval", shards / "val", "--out", none, "--workers", "1")
    assert json.loads(none.read_text())["eval"][str(shards / "val")]["knn@20"]["images"] == 24
