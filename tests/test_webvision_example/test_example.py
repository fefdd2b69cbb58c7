"""The generated WebVision-format example: layout, consistency, WordNet classes, images, text."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from webvision_example import images, make_example
from webvision_example.classes import choose_classes
from webvision_example.plan import SOURCES, TEST_PER_CLASS

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(classes=6, images_per_class=10, val_per_class=2)


@pytest.fixture(scope="module")
def v1(tmp_path_factory):
    out = tmp_path_factory.mktemp("v1") / "webvision1"
    summary = make_example(out, seed=1, version="1.0", **SMALL)
    return out, summary


@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    out = tmp_path_factory.mktemp("v2") / "webvision2"
    summary = make_example(out, seed=2, version="2.0", **SMALL)
    return out, summary


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def json_file(root: Path, listed: str, version: str) -> Path:
    return root / listed if version == "1.0" else root / "meta" / listed


def test_layout_v1(v1):
    root, s = v1
    info = root / "info"
    for name in ["synsets.txt", "queries_google.txt", "queries_flickr.txt", "queries_synsets_map.txt",
                 "train_filelist_google.txt", "train_filelist_flickr.txt", "train_filelist_all.txt",
                 "train_meta_list_google.txt", "train_meta_list_flickr.txt", "train_meta_list_all.txt",
                 "val_filelist.txt", "test_filelist.txt"]:
        assert (info / name).is_file(), name
    assert not (info / "queries.txt").exists()
    assert (root / "README.txt").is_file() and "seed: 1" in (root / "README.txt").read_text()
    assert lines(info / "queries_google.txt") == lines(info / "queries_flickr.txt")
    queries = lines(info / "queries_google.txt")
    assert [int(q.split()[0]) for q in queries] == list(range(1, len(queries) + 1))
    assert s["classes"] <= len(queries) <= 2 * s["classes"] and s["queries"] == len(queries)
    assert all(re.fullmatch(r"\d+ \S+", q) and " " not in q.split(" ", 1)[1] for q in queries)
    # 1-based class index in 1.0, every class has a query
    mapped = [int(line.split()[1]) for line in lines(info / "queries_synsets_map.txt")]
    assert sorted(set(mapped)) == list(range(1, s["classes"] + 1))
    train = lines(info / "train_filelist_all.txt")
    assert all(re.fullmatch(r"google/q\d{4}/\d{6}\.jpg \d+", t) for t in train if t.startswith("google"))
    assert all(re.fullmatch(r"flickr/q\d{4}/\d{10,11}\.jpg \d+", t) for t in train if t.startswith("flickr"))
    assert sorted(p.name for p in (root / "google").glob("q*.json"))[0] == "q0001.json"
    assert not (root / "meta").exists()
    assert len(list((root / "val_images_256").glob("*.jpg"))) == s["val"] == 2 * s["classes"]
    n_test = len(list((root / "test_images_256").glob("*.jpg")))
    assert n_test == s["test"] == TEST_PER_CLASS * s["classes"]


def test_layout_v2(v2):
    root, s = v2
    info = root / "info"
    assert (info / "queries.txt").is_file()
    assert not (info / "queries_google.txt").exists() and not (info / "queries_flickr.txt").exists()
    mapped = [int(line.split()[1]) for line in lines(info / "queries_synsets_map.txt")]
    assert sorted(set(mapped)) == list(range(0, s["classes"]))  # 0-based in 2.0
    train = lines(info / "train_filelist_all.txt")
    assert all(re.fullmatch(r"(google|flickr)/q\d{5}/\d+\.jpg \d+", t) for t in train)
    assert (root / "meta" / "google" / "q00001.json").is_file()
    assert (root / "meta" / "flickr" / "q00001.json").is_file()
    assert not list((root / "google").glob("*.json"))
    assert lines(info / "train_meta_list_google.txt")[0].startswith("google/q00001.json ")


@pytest.mark.parametrize("which", ["v1", "v2"])
def test_lists_are_consistent(which, request):
    root, s = request.getfixturevalue(which)
    version = s["version"]
    info = root / "info"
    base = 1 if version == "1.0" else 0
    pairs = [line.split() for line in lines(info / "queries_synsets_map.txt")]
    qmap = {int(a): int(b) - base for a, b in pairs}
    referenced: dict[str, set[int]] = {}
    for source in SOURCES:
        files = lines(info / f"train_filelist_{source}.txt")
        metas = lines(info / f"train_meta_list_{source}.txt")
        assert len(files) == len(metas) == s["train"][source] > 0
        for f, m in zip(files, metas):
            path, cid = f.split()
            listed, row = m.split()
            qdir = path.split("/")[1]
            assert path.startswith(source + "/") and listed == f"{source}/{qdir}.json"
            assert int(cid) == qmap[int(qdir[1:])]
            records = json.loads(json_file(root, listed, version).read_text(encoding="utf-8"))
            assert 1 <= int(row) <= len(records)
            if source == "flickr":
                assert records[int(row) - 1]["id"] == Path(path).stem
            assert int(row) not in referenced.setdefault(listed, set())
            referenced[listed].add(int(row))
    assert lines(info / "train_filelist_all.txt") == (lines(info / "train_filelist_google.txt")
                                                      + lines(info / "train_filelist_flickr.txt"))
    assert lines(info / "train_meta_list_all.txt") == (lines(info / "train_meta_list_google.txt")
                                                       + lines(info / "train_meta_list_flickr.txt"))
    # failed downloads: some JSON lists hold rows that no image uses
    unused = 0
    for listed, rows in referenced.items():
        n = len(json.loads(json_file(root, listed, version).read_text(encoding="utf-8")))
        unused += n - len(rows)
    assert unused > 0
    val = lines(info / "val_filelist.txt")
    assert [v.split()[0] for v in val] == [f"val{i:06d}.jpg" for i in range(1, len(val) + 1)]
    expected = sorted(list(range(s["classes"])) * SMALL["val_per_class"])
    assert sorted(int(v.split()[1]) for v in val) == expected
    assert lines(info / "test_filelist.txt")[0] == "test000001.jpg"
    assert len(lines(info / "train_filelist_all.txt")) == s["classes"] * SMALL["images_per_class"]


def test_classes_are_wordnet_synsets(v1):
    from text_mining.wordnet import load_wordnet, synset_from_wnid

    root, s = v1
    wn = load_wordnet()
    synsets = lines(root / "info" / "synsets.txt")
    assert len(synsets) == s["classes"]
    wnids = [line.split(" ", 1)[0] for line in synsets]
    assert wnids == sorted(wnids) and len(set(wnids)) == len(wnids)
    for line in synsets:
        wnid, words = line.split(" ", 1)
        syn = synset_from_wnid(wn, wnid)
        assert syn.pos() == "n"
        assert words.split(", ") == [n.replace("_", " ") for n in syn.lemma_names()]
    # hypernym words used in the text do not depend on NLTK's (set) order of pointers
    import random

    for c in choose_classes(wn, 300, random.Random(0)):
        hypers = sorted(synset_from_wnid(wn, c.wnid).hypernyms(), key=lambda h: h.offset())
        assert c.hypernym == hypers[0].lemma_names()[0].replace("_", " ")
    queries = [q.split()[1] for q in lines(root / "info" / "queries_google.txt")]
    lemma_words = {w for line in synsets for w in re.split(r"[ ,]+", line.split(" ", 1)[1])}
    assert all(any(w in lemma_words for w in q.split("+")) for q in queries)


def test_images_are_jpegs_of_varied_size(v1):
    root, _s = v1
    sizes = set()
    for line in lines(root / "info" / "train_filelist_all.txt"):
        with Image.open(root / line.split()[0]) as im:
            assert im.format == "JPEG" and im.mode in ("RGB", "L")
            assert all(images.MIN_SIDE <= side <= images.MAX_SIDE for side in im.size)
            sizes.add(im.size)
    assert len(sizes) > 10
    for name in lines(root / "info" / "test_filelist.txt"):
        with Image.open(root / "test_images_256" / name) as im:
            assert im.format == "JPEG" and min(im.size) == images.VAL_SIDE


def test_class_images_differ_between_classes(v1):
    import numpy as np

    root, _s = v1
    means: dict[int, list] = {}
    for line in lines(root / "info" / "train_filelist_all.txt"):
        path, cid = line.split()
        with Image.open(root / path) as im:
            pixels = np.asarray(im.convert("RGB"), dtype=float)
        means.setdefault(int(cid), []).append(pixels.mean(axis=(0, 1)))
    centers = {c: np.median(v, axis=0) for c, v in means.items()}
    assert len({tuple(np.round(c / 8)) for c in centers.values()}) == len(centers)


def test_messy_text(v1):
    root, _s = v1
    records = []
    for path in sorted((root / "google").glob("*.json")) + sorted((root / "flickr").glob("*.json")):
        records += json.loads(path.read_text(encoding="utf-8"))
    text = [str(r.get(k) or "") for r in records for k in ("title", "description")]
    text += [" ".join(r.get("tags") or []) for r in records]
    joined = "\n".join(text)
    assert re.search(r"&(amp|quot|#39|lt|gt);", joined)
    assert re.search(r"https?://|www\.", joined)
    assert re.search(r"#\w+", joined)
    assert any(not s.isascii() for s in text)
    assert any(r.get(k, "missing") in (None, "missing") for r in records for k in ("title", "description"))
    assert all(isinstance(r.get("rank"), str) for r in records if "rank" in r and r["rank"] is not None)
    flickr = json.loads((root / "flickr" / "q0001.json").read_text(encoding="utf-8"))
    assert all(set(r) <= {"id", "title", "description", "tags"} for r in flickr)
    tags = [t for r in records for t in (r.get("tags") or [])]
    assert tags and all(t == t.lower() for t in tags)


def test_deterministic(tmp_path):
    args = dict(classes=3, images_per_class=6, val_per_class=1)
    a = make_example(tmp_path / "a", seed=5, **args)
    make_example(tmp_path / "b", seed=5, **args)
    make_example(tmp_path / "c", seed=6, **args)
    ta, tb, tc = tree(tmp_path / "a"), tree(tmp_path / "b"), tree(tmp_path / "c")
    assert ta == tb
    assert ta != tc
    assert a["images_written"] == len([k for k in ta if k.endswith(".jpg")]) > 0
    # no images: same lists and metadata, no image files
    make_example(tmp_path / "d", seed=5, images=False, **args)
    td = tree(tmp_path / "d")
    assert not [k for k in td if k.endswith(".jpg")]
    assert {k: v for k, v in ta.items() if not k.endswith(".jpg") and k != "README.txt"} == \
           {k: v for k, v in td.items() if k != "README.txt"}


def test_refuses_non_empty_out(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="busy"):
        make_example(out, classes=2, images_per_class=2, images=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    make_example(empty, classes=2, images_per_class=2, images=False)
    assert (empty / "info" / "synsets.txt").is_file()
    with pytest.raises(ValueError):
        make_example(tmp_path / "x", classes=0)
    with pytest.raises(ValueError):
        make_example(tmp_path / "x", version="3.0")


def test_failed_run_leaves_nothing(tmp_path, monkeypatch):
    def boom(*_args, **_kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(images, "write_images", boom)
    with pytest.raises(RuntimeError):
        make_example(tmp_path / "out", classes=2, images_per_class=2)
    assert list(tmp_path.iterdir()) == []


def test_cli(tmp_path):
    out = tmp_path / "example"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               PYTHONHASHSEED="123")  # output must not depend on str hashing (NLTK keeps sets)
    cmd = [sys.executable, "-m", "webvision_example", "--out", str(out), "--classes", "20",
           "--images-per-class", "4", "--seed", "3", "--version", "2.0", "--no-images"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "20 classes" in done.stdout and "80 train images" in done.stdout
    assert (out / "info" / "queries.txt").is_file()
    assert (out / "meta" / "flickr" / "q00001.json").is_file()
    assert not list(out.rglob("*.jpg"))
    # this process hashes strings with another seed: the same arguments give the same bytes
    make_example(tmp_path / "here", classes=20, images_per_class=4, seed=3, version="2.0", images=False)
    assert tree(tmp_path / "here") == tree(out)


def test_cli_refuses_non_empty_out(tmp_path, capsys):
    from webvision_example.__main__ import main

    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path), "--classes", "2", "--no-images"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == f"python -m webvision_example: error: {tmp_path} is not empty; give a new or empty folder for the example\n"
    with pytest.raises(SystemExit) as exc:
        main([])  # --out is required
    assert exc.value.code == 2
