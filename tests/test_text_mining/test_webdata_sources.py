"""Web data from where users keep it (text_mining/webdata.py, class_list.py, publish.py):
img2dataset tars and tables read from S3 (moto on loopback), the output uploaded to S3, parts that
open only their own tars, tables read by row range, ``--classes imagenet1k`` from timm's data file
without torch, and the class-name matcher against the rule it replaces."""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CONFIG, REPO
from text_mining import webdata
from text_mining.class_list import NameMatcher
from text_mining.config import ReaderConfig
from text_mining.problems import Problems
from text_mining.release_files import ClassInfo, ReleaseError
from text_mining.webdata import WebData
from webtag.storage import filesystem, location
from webvision_example.img2dataset import make_img2dataset


def _records(root, classes, lo=0, hi=None, class_list=None):
    data = WebData(root, ReaderConfig(class_list=class_list or str(classes)))
    hi = data.total if hi is None else hi
    return data, [(r.index, r.key, r.path, r.class_id, r.title) for r in data.iter_records(lo, hi, Problems())]


def _run(*args, cwd, module="text_mining"):
    env = dict(os.environ, PYTHONPATH=str(REPO), WEBTAG_LOG="WARNING", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _upload(local: Path, url: str) -> None:
    fs, root = filesystem(url)
    for p in sorted(local.iterdir()):
        fs.put_file(str(p), f"{root}/{p.name}")


# ---- the class-name matcher -----------------------------------------------------------------

def _old_rule(classes, text):
    """The matcher this replaces: one regular expression per name, longest first, then lowest id."""
    names = sorted(((w.lower(), c.class_id) for c in classes for w in c.words), key=lambda t: (-len(t[0]), t[1]))
    return next((cid for w, cid in names if w and re.search(r"\b" + re.escape(w) + r"\b", text)), -1)


def test_name_matcher_agrees_with_the_regex_rule():
    words = [("dog",), ("hot dog", "dog house"), ("house",), ("house cat", "cat"), ("cat's eye",),
             ("sea", "sea lion"), ("lion",), ("c++",), ("t-shirt", "shirt"), ("dog",), ("new york", "york"),
             ("ice", "ice-cream", "cream")]
    classes = [ClassInfo(i, f"n{i:08d}", w) for i, w in enumerate(words)]
    vocab = ["dog", "dogs", "hot", "house", "cat", "cat's", "eye", "sea", "lion", "sea-lion", "c++", "c",
             "t-shirt", "shirt", "new", "york", "ice", "ice-cream", "cream", "the", "a", "hotdog", "_dog",
             "dog_", "2dog", "éclair", ",", ".", "'s", "-"]
    rng = random.Random(7)
    matcher = NameMatcher(classes)
    seps = [" ", "  ", "", ", ", "-", "/", "'"]
    texts = ["".join(rng.choice(vocab) + rng.choice(seps) for _ in range(rng.randint(0, 9))).lower()
             for _ in range(600)]
    texts += ["hot dog house", "a dog house cat", "c++ code", "ice-cream", "sea lion", "new york dog"]
    found = [matcher.match(t) for t in texts]
    assert found == [_old_rule(classes, t) for t in texts]
    assert len(set(found)) >= 8   # the captions reach most classes, and no class


# ---- --classes imagenet1k ----------------------------------------------------------------------

def test_imagenet1k_classes_from_timm_without_torch():
    code = ("import sys\nfrom text_mining.class_list import read_class_list\n"
            "c = read_class_list('imagenet1k')\n"
            "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'imported'\n"
            "print(len(c), c[0].wnid, c[0].name, c[-1].wnid)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["1000", "n01440764", "tench", "n15075141"]   # every one a WordNet 3.0 noun


def test_imagenet1k_without_timm_names_the_package(monkeypatch):
    import importlib.util
    from text_mining import class_list
    real = importlib.util.find_spec
    monkeypatch.setattr(class_list.importlib.util, "find_spec", lambda n, *a: None if n == "timm" else real(n, *a))
    with pytest.raises(ReleaseError, match=r"imagenet1k: .* comes from the timm package .*pip install timm"):
        class_list.read_class_list("imagenet1k")


# ---- parts read their own tars; tables by row range -------------------------------------------

def test_parts_open_only_their_tars_when_img2dataset_parquet_is_there(tmp_path):
    web = tmp_path / "web"
    make_img2dataset(web, classes=2, images_per_class=6, per_shard=4)
    tars = sorted(web.glob("*.tar"))
    (web / "._00000.tar").write_bytes(b"macOS metadata")   # hidden: not a shard
    classes = web / "synsets.txt"
    data, whole = _records(web, classes)
    assert len(tars) == 3 and data.total == 12
    # reading the last part does not open the first tar: a broken one is not noticed
    first = tars[0].read_bytes()
    tars[0].write_bytes(b"not a tar")
    assert _records(web, classes, 8, 12)[1] == [r for r in whole if r[0] >= 8]
    with pytest.raises(ReleaseError, match=r"00000.tar: not a readable tar file"):
        _records(web, classes, 0, 4)
    tars[0].write_bytes(first)
    # without the .parquet files the tars' headers are counted: the same plan, the same records
    for p in web.glob("0*.parquet"):
        p.rename(p.with_suffix(".parquet.away"))
    assert _records(web, classes)[1] == whole
    # a .parquet that does not describe its tar is refused by the part that reads the tar
    (web / "00001.parquet.away").rename(web / "00001.parquet")
    for p in web.glob("*.parquet.away"):
        p.rename(p.with_suffix(""))
    pq.write_table(pa.table({"status": ["success"] * 5}), web / "00001.parquet")
    with pytest.raises(ReleaseError, match=r"00001.tar holds 4 images but its .parquet lists 5"):
        _records(web, classes, 4, 9)


def test_table_parts_read_row_ranges_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(webdata, "BATCH_ROWS", 3)
    classes = tmp_path / "synsets.txt"
    classes.write_text("n02084071\nn02121808\n")
    n = 23
    t = pa.table({"image": [f"{i}.jpg" for i in range(n)], "caption": ["a dog" if i % 2 else "a house cat" for i in range(n)],
                  "unused": [b"x" * 10] * n})
    pq.write_table(t, tmp_path / "t.parquet", row_group_size=5)
    data, whole = _records(tmp_path / "t.parquet", classes)
    assert [r[0] for r in whole] == list(range(n)) and data._columns == ["image", "caption"]
    assert [r for lo, hi in ((0, 4), (4, 5), (5, 17), (17, 23)) for r in _records(tmp_path / "t.parquet", classes,
                                                                                   lo, hi)[1]] == whole


# ---- S3: input and output --------------------------------------------------------------------

def test_webdata_from_s3_tars_and_table(tmp_path, bucket):
    web = tmp_path / "web"
    make_img2dataset(web, classes=2, images_per_class=6, per_shard=5)
    _upload(web, f"{bucket}/web")
    classes = web / "synsets.txt"
    local = _records(web, classes)[1]
    assert _records(f"{bucket}/web", classes)[1] == local
    assert _records(f"{bucket}/web", classes, 5, 9)[1] == [r for r in local if 5 <= r[0] < 9]
    rows = [{"image": r[2], "caption": r[4]} for r in local]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet", row_group_size=4)
    fs, root = filesystem(bucket)
    fs.put_file(str(tmp_path / "t.parquet"), f"{root}/t.parquet")
    assert [r[3] for r in _records(f"{bucket}/t.parquet", classes)[1]] == [r[3] for r in local]
    with pytest.raises(ReleaseError, match=r"/nothing: no img2dataset tar shards"):
        WebData(f"{bucket}/nothing", ReaderConfig(class_list=str(classes)))


def test_run_from_s3_to_s3_and_the_steps_refuse_a_url(tmp_path, bucket):
    web = tmp_path / "web"
    make_img2dataset(web, classes=3, images_per_class=4, per_shard=6)
    _upload(web, f"{bucket}/web")
    out = f"{bucket}/labels"
    res = _run("run", "--webdata", f"{bucket}/web", "--classes", web / "synsets.txt", "--out", out,
               "--workers", "1", "--config", EXAMPLE_CONFIG, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    remote = location(out)
    assert (remote / "complete.json").is_file() and not (remote / "_work").is_dir()
    marker = json.loads((remote / "complete.json").read_text())
    stage = next((tmp_path / "_work" / "stage").iterdir())
    assert marker == json.loads((stage / "complete.json").read_text())
    for name, rec in marker["files"].items():   # what later stages read: the tables, whole
        assert (remote / name).read_bytes() == (stage / name).read_bytes()
    assert json.loads((remote / "report.json").read_text())["webvision"] == f"{bucket}/web"
    images = pq.read_table(pa.BufferReader((remote / "images.parquet").read_bytes()))
    assert images.num_rows > 0 and all(".tar/" in p for p in images.column("path").to_pylist())
    for step in ("count --part 0 --num-parts 1", "merge"):
        res = _run(*step.split(), "--webdata", f"{bucket}/web", "--classes", web / "synsets.txt", "--out", out,
                   cwd=tmp_path)
        assert res.returncode == 2 and "must be on a shared file system" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    # upload: a finished folder only
    res = _run("upload", stage / "_work", f"{bucket}/other", cwd=tmp_path)
    assert res.returncode == 2 and "not a finished text-mining output" in res.stderr
    assert not location(f"{bucket}/other").is_dir()
    assert _run("upload", stage, f"{bucket}/other", cwd=tmp_path).returncode == 0
    assert (location(f"{bucket}/other") / "complete.json").is_file()
    # the shard writer takes the labels from the URL (a checked local copy), the web data locally
    res = _run("shard", "--webdata", web, "--labels", out, "--out", tmp_path / "shards", "--max-count", "8",
               "--workers", "1", cwd=tmp_path, module="pipeline")
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = pq.read_table(tmp_path / "shards" / "train" / "manifest.parquet")
    assert manifest.num_rows == images.num_rows
    # ... and the web data from the URL too: its tars streamed, the same shards as from the local copy
    res = _run("shard", "--webdata", f"{bucket}/web", "--labels", out, "--out", tmp_path / "s2", "--max-count", "8",
               "--workers", "1", cwd=tmp_path, module="pipeline")
    assert res.returncode == 0, res.stderr[-3000:]
    assert pq.read_table(tmp_path / "s2" / "train" / "manifest.parquet").equals(manifest)
    for shard in sorted(p.name for p in (tmp_path / "shards" / "train").glob("*.tar")):
        assert (tmp_path / "s2" / "train" / shard).read_bytes() == (tmp_path / "shards" / "train" / shard).read_bytes()
    assert not list(Path(tempfile.gettempdir()).glob("webtag-webdata-*")), "a spooled tar left behind"


def test_labels_url_without_marker_and_release_url_are_refused(tmp_path, bucket):
    fs, root = filesystem(bucket)
    fs.pipe_file(f"{root}/half/images.parquet", b"PAR1")   # an upload cut short: no complete.json
    res = _run("shard", "--webvision", tmp_path, "--labels", f"{bucket}/half", "--out", tmp_path / "s",
               cwd=tmp_path, module="pipeline")
    assert res.returncode == 2 and f"{bucket}/half is not a finished text-mining output" in res.stderr, res.stderr
    res = _run("count", "--webvision", f"{bucket}/release", "--out", tmp_path / "o", "--part", "0",
               "--num-parts", "1", cwd=tmp_path)
    assert res.returncode == 2 and f"{bucket}/release is not a WebVision release" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_a_webvision_release_at_a_url_mines_and_shards_as_the_local_one(example_v1, mined_v1, shards_v1, bucket,
                                                                        tmp_path):
    """The release's lists and metadata JSON read from S3: the same tables (fingerprint) as mined_v1
    from the local copy; its images read from S3 by the shard writer: the same samples."""
    from webtag.remote_copy import publish_tree
    publish_tree(example_v1, f"{bucket}/release")
    res = _run("run", "--webvision", f"{bucket}/release", "--out", tmp_path / "mined", "--workers", "1",
               "--config", EXAMPLE_CONFIG, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    local, remote = (json.loads((d / "complete.json").read_text()) for d in (mined_v1, tmp_path / "mined"))
    assert remote["fingerprint"] == local["fingerprint"]
    res = _run("shard", "--webvision", f"{bucket}/release", "--labels", tmp_path / "mined", "--out",
               tmp_path / "shards", "--workers", "1", "--max-size", "100000", cwd=tmp_path, module="pipeline")
    assert res.returncode == 0, res.stderr[-3000:]
    for split in ("train", "val"):   # the same samples as the shards made from the local copy
        local, remote = (pq.read_table(d / split / "manifest.parquet") for d in (shards_v1, tmp_path / "shards"))
        assert remote.select(["key", "class_id", "bytes"]).equals(local.select(["key", "class_id", "bytes"]))
