"""Evaluation splits from the release's lists: test (no labels), val, --split all, class subsets."""
import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pipeline import schema
from pipeline.loader import BadSamples, read_shard
from pipeline.shards import ShardConfig, shard_all
from conftest import REPO
from webvision_example import make_example


def _samples(split_dir):
    urls = [str(split_dir / name) for name in schema.read_sizes(split_dir)]
    return [(s, json.loads(s["json"])) for s in wds.WebDataset(urls, shardshuffle=False)]


def _lines(path):
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def _shard(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", "shard", "--workers", "1", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, env={"WEBTAG_LOG": "WARNING", "PATH": ""})


@pytest.fixture(scope="module")
def release_v2(tmp_path_factory):
    out = tmp_path_factory.mktemp("tsplit") / "webvision2"
    make_example(out, classes=4, images_per_class=4, seed=2, version="2.0", val_per_class=3)
    return out


@pytest.fixture(scope="module")
def cli_shards(release_v2, tmp_path_factory):
    out = tmp_path_factory.mktemp("tsplit") / "s"
    r = _shard("--webvision", release_v2, "--out", out, "--split", "test", "--num-parts", 2, "max_count=5")
    assert r.returncode == 0, r.stderr
    return out


def test_test_split_follows_the_list(cli_shards, release_v2):
    example_v2 = release_v2
    listing = _lines(example_v2 / "info" / "test_filelist.txt")
    got = _samples(cli_shards / "test")
    assert [rec["path"] for _, rec in got] == [name for (name,) in listing]    # names and order of the list
    for i, (s, rec) in enumerate(got):
        assert rec[schema.LIST_INDEX] == rec["index"] == i and s["__key__"] == schema.sample_key(i)
        assert rec["class_id"] == schema.NO_CLASS and int(s["cls"]) == schema.NO_CLASS
        assert rec["label_ids"] == rec["keyword_ids"] == rec["label_weights"] == []
        assert s["jpg"] == (example_v2 / "test_images_256" / rec["path"]).read_bytes()
    report = json.loads((cli_shards / "test" / schema.REPORT_FILE).read_text())
    assert schema.list_record(cli_shards / "test") == {
        "list_file": str((example_v2 / "info" / "test_filelist.txt").resolve()),
        "list_entries": len(listing), "list_skipped": 0}
    assert report["samples"] == len(listing)
    meta = pq.read_schema(cli_shards / "test" / schema.MANIFEST_FILE).metadata
    assert int(meta[schema.META_LIST["list_entries"]]) == len(listing)


def test_the_loader_reads_unlabelled_samples(cli_shards):
    split = cli_shards / "test"
    sizes = schema.read_sizes(split)
    bad = BadSamples(0)
    got = [s for name, n in sizes.items() for s in read_shard(split / name, bad, n)]
    assert len(got) == sum(sizes.values()) and bad.count == 0


def test_missing_test_image_is_counted_against_the_list(example_v1, tmp_path):
    root = tmp_path / "rel"
    shutil.copytree(example_v1, root)
    first = _lines(root / "info" / "test_filelist.txt")[0][0]
    shutil.rmtree(root / "test_images_256")           # the full-size folder is read instead
    shutil.copytree(example_v1 / "test_images_256", root / "test_images")
    (root / "test_images" / first).unlink()
    report = shard_all(root, None, tmp_path / "s", ShardConfig(), splits=["test"], num_parts=1)["test"]
    n = len(_lines(root / "info" / "test_filelist.txt"))
    assert report["list_entries"] == n and report["samples"] == n - 1 and report["list_skipped"] == 1
    got = _samples(tmp_path / "s" / "test")
    assert got[0][1]["path"] != first and got[0][1][schema.LIST_INDEX] == 1


def test_split_all_includes_test_only_when_listed(example_v1, tmp_path):
    root = tmp_path / "rel"
    shutil.copytree(example_v1, root, ignore=shutil.ignore_patterns("google", "flickr", "*.json"))
    out = tmp_path / "s"
    assert _shard("--webvision", root, "--out", out, "--split", "val").returncode == 0
    r = _shard("--webvision", root, "--out", out)           # all, no --labels: train refused
    assert r.returncode == 2 and "--labels" in r.stderr and "Traceback" not in r.stderr
    (root / "info" / "test_filelist.txt").unlink()
    from pipeline.shards import release_splits
    assert release_splits(root) == ["train", "val"] and release_splits(example_v1) == ["train", "val", "test"]


def test_bad_test_list_line_is_one_clear_line(example_v1, tmp_path):
    root = tmp_path / "rel"
    shutil.copytree(example_v1, root, ignore=shutil.ignore_patterns("google", "flickr", "*.json"))
    listing = root / "info" / "test_filelist.txt"
    listing.write_text(listing.read_text() + "a.jpg b.jpg\n")
    r = _shard("--webvision", root, "--out", tmp_path / "s", "--split", "test")
    assert r.returncode == 2 and "test_filelist.txt:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "s" / "test" / schema.SIZES_FILE).exists()


def test_val_class_subset_keeps_ids_of_a_prefix(example_v1, tmp_path):
    rep = shard_all(example_v1, None, tmp_path / "s", ShardConfig(classes="0:3"), splits=["val"])["val"]
    listing = _lines(example_v1 / "info" / "val_filelist.txt")
    kept = [(i, name, int(c)) for i, (name, c) in enumerate(listing) if int(c) < 3]
    got = _samples(tmp_path / "s" / "val")
    assert [(r[schema.LIST_INDEX], r["path"], r["class_id"]) for _, r in got] == kept
    assert rep["classes"] == [0, 1, 2] and rep["list_entries"] == len(kept)
    assert rep["outside_classes"] == len(listing) - len(kept)
    # a list of ids is renumbered 0..K-1 in ascending order
    shard_all(example_v1, None, tmp_path / "l", ShardConfig(classes=[5, 2]), splits=["val"])
    got = _samples(tmp_path / "l" / "val")
    want = [(name, {2: 0, 5: 1}[int(c)]) for name, c in listing if int(c) in (2, 5)]
    assert [(r["path"], r["class_id"]) for _, r in got] == want


def test_class_subset_values_refused(example_v1, tmp_path):
    r = _shard("--webvision", example_v1, "--out", tmp_path / "s", "--split", "val", "classes=10:50")
    assert r.returncode == 2 and "quote it" in r.stderr          # YAML read 10:50 as 650
    r = _shard("--webvision", example_v1, "--out", tmp_path / "s", "--split", "val", "classes='0:500'")
    assert r.returncode == 2 and "0:500" in r.stderr and "Traceback" not in r.stderr


def test_mini_webvision_chain(tmp_path):
    """Text mining with reader.classes=0:3 reader.sources=[google], then shards with those labels:
    exactly the first 3 classes, Google only, val restricted to them (the mini-WebVision cut)."""
    from tests.conftest import example_config
    from text_mining import schema as tm_schema
    from text_mining.runner import run_all

    root = tmp_path / "rel"
    make_example(root, classes=5, images_per_class=8, seed=4, version="2.0", val_per_class=2)
    mined = tmp_path / "mined"
    run_all(root, mined, example_config("reader.classes=0:3", "reader.sources=[google]"), workers=1, num_parts=1)
    synsets = [line.split()[0] for line in (root / "info" / "synsets.txt").read_text().splitlines()]
    classes = pq.read_table(mined / tm_schema.CLASSES_FILE).to_pydict()
    assert classes["wnid"] == synsets[:3] and classes["class_id"] == [0, 1, 2]
    reports = shard_all(root, mined, tmp_path / "s", ShardConfig(), splits=["train", "val"], num_parts=1)
    train = [r for _, r in _samples(tmp_path / "s" / "train")]
    files = [(p, int(c)) for p, c in _lines(root / "info" / "train_filelist_all.txt")]
    assert sorted(r["path"] for r in train) == sorted(p for p, c in files if c < 3 and p.startswith("google/"))
    assert {r["class_id"] for r in train} == {0, 1, 2} and {r["source"] for r in train} == {"google"}
    val = [r for _, r in _samples(tmp_path / "s" / "val")]
    listing = _lines(root / "info" / "val_filelist.txt")
    assert [(r["path"], r["class_id"]) for r in val] == [(n, int(c)) for n, c in listing if int(c) < 3]
    assert reports["val"]["outside_classes"] == sum(int(c) >= 3 for _, c in listing) > 0
    # a subset that is not the labels' own is refused
    with pytest.raises(ValueError, match="reader.classes=0:4"):
        shard_all(root, mined, tmp_path / "t", ShardConfig(classes="0:4"), splits=["val"], num_parts=1)
