"""ImageNet validation folders of each layout -> the imagenet_val split, labelled by wnid."""
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import webdataset as wds
from PIL import Image

from pipeline import schema
from pipeline.imagenet_val import ImageNetValError, read_imagenet_val
from pipeline.shards import ShardConfig, shard_all
from conftest import REPO

FOREIGN = "n99999999"   # a synset the release does not have


def _jpeg(i):
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 24, 3), (i * 37) % 256, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _plan(example):
    """(file name, wnid) of 10 images: the release's classes in a shuffled order, two foreign."""
    wnids = [line.split()[0] for line in (example / "info" / "synsets.txt").read_text().splitlines()]
    order = [3, 0, 7, 1, None, 5, 2, None, 6, 4]
    return [(f"ILSVRC2012_val_{i + 1:08d}.JPEG", FOREIGN if c is None else wnids[c]) for i, c in enumerate(order)], wnids


def _flat(folder, plan):
    folder.mkdir(parents=True)
    for i, (name, _) in enumerate(plan):
        (folder / name).write_bytes(_jpeg(i))
    return folder


def layout_per_wnid(tmp, plan, wnids):
    root = tmp / "val"
    for i, (name, wnid) in enumerate(plan):
        (root / wnid).mkdir(parents=True, exist_ok=True)
        (root / wnid / name).write_bytes(_jpeg(i))
    return root, None


def layout_solution_csv(tmp, plan, wnids):
    root = _flat(tmp / "val", plan)
    lines = ["ImageId,PredictionString"] + [f"{n[:-5]},{w} 10 20 30 40 {w} 1 2 3 4" for n, w in reversed(plan)]
    (tmp / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")   # beside the folder
    return root, None


def layout_val_txt(tmp, plan, wnids):
    root = _flat(tmp / "images", plan)
    order = sorted(set(wnids) | {FOREIGN})                    # caffe-style: indices into synset_words.txt
    meta = tmp / "caffe"
    meta.mkdir()
    (meta / "synset_words.txt").write_text("".join(f"{w} words of {w}\n" for w in order))
    (meta / "val.txt").write_text("".join(f"{n} {order.index(w)}\n" for n, w in plan))
    return root, meta / "val.txt"


def layout_devkit(tmp, plan, wnids):
    root = _flat(tmp / "ILSVRC2012_img_val", plan)
    data = tmp / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    ids = {w: 100 + k for k, w in enumerate(sorted(set(wnids) | {FOREIGN}))}
    rows = np.array([(i, w, f"words {w}") for w, i in ids.items()],
                    dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O")]).reshape(-1, 1)
    scipy.io.savemat(str(data / "meta.mat"), {"synsets": rows})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{ids[w]}\n" for _, w in plan))
    return root, None


LAYOUTS = [layout_per_wnid, layout_solution_csv, layout_val_txt, layout_devkit]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda f: f.__name__)
def test_each_layout_gives_the_same_split(layout, example_v1, tmp_path):
    plan, wnids = _plan(example_v1)
    folder, labels = layout(tmp_path, plan, wnids)
    images, _source = read_imagenet_val(folder, labels)
    assert [(v.name, v.wnid) for v in images] == sorted(plan)
    report = shard_all(example_v1, None, tmp_path / "s", ShardConfig(), imagenet_val=folder, imagenet_labels=labels,
                       splits=[schema.IMAGENET_VAL_SPLIT])[schema.IMAGENET_VAL_SPLIT]
    split = tmp_path / "s" / schema.IMAGENET_VAL_SPLIT
    got = [(s, json.loads(s["json"])) for s in
           wds.WebDataset([str(split / n) for n in schema.read_sizes(split)], shardshuffle=False)]
    want = [(i, n, wnids.index(w)) for i, (n, w) in enumerate(sorted(plan)) if w != FOREIGN]
    assert [(r[schema.LIST_INDEX], r["path"], r["class_id"]) for _, r in got] == want
    for s, r in got:
        assert int(s["cls"]) == r["class_id"] and r["label_ids"] == [r["class_id"]]
        assert s["jpg"] == _jpeg(int(r["path"][15:23]) - 1)
    assert report["outside_classes"] == 2 and report["list_entries"] == 8 and report["list_skipped"] == 0


def test_strict_refuses_foreign_synsets(example_v1, tmp_path):
    plan, wnids = _plan(example_v1)
    folder, _ = layout_per_wnid(tmp_path, plan, wnids)
    with pytest.raises(ImageNetValError, match=FOREIGN):
        shard_all(example_v1, None, tmp_path / "s", ShardConfig(imagenet_strict=True), imagenet_val=folder,
                  splits=[schema.IMAGENET_VAL_SPLIT])


def test_class_subset_applies(example_v1, tmp_path):
    plan, wnids = _plan(example_v1)
    folder, _ = layout_per_wnid(tmp_path, plan, wnids)
    report = shard_all(example_v1, None, tmp_path / "s", ShardConfig(classes="0:4"), imagenet_val=folder,
                       splits=[schema.IMAGENET_VAL_SPLIT])[schema.IMAGENET_VAL_SPLIT]
    assert report["list_entries"] == 4 and report["classes"] == [0, 1, 2, 3]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", "shard", "--workers", "1", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, env={"WEBTAG_LOG": "WARNING", "PATH": ""})


def test_cli_packs_only_imagenet_val_and_refuses_bad_folders(example_v1, tmp_path):
    plan, wnids = _plan(example_v1)
    folder, _ = layout_solution_csv(tmp_path, plan, wnids)
    r = _cli("--webvision", example_v1, "--out", tmp_path / "s", "--imagenet-val", folder)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.is_dir() and p.name[0] != ".") == [
        schema.IMAGENET_VAL_SPLIT]
    assert "2 of its synsets" not in r.stderr and "1 of its synsets" in r.stderr and FOREIGN in r.stderr   # warned
    (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,oops\n")
    r = _cli("--webvision", example_v1, "--out", tmp_path / "t", "--imagenet-val", folder)
    assert r.returncode == 2 and "LOC_val_solution.csv:2" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "t" / schema.IMAGENET_VAL_SPLIT).exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _cli("--webvision", example_v1, "--out", tmp_path / "u", "--imagenet-val", empty)
    assert r.returncode == 2 and "no images" in r.stderr and len(r.stderr.strip().splitlines()) == 1
