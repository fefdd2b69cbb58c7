"""The shard writer reading the release's training archives (webvision_train_XX.tar) in place:
the same shards as from extracted files, parts by archive, missing and damaged archives."""
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from pipeline import schema
from pipeline.shards import ShardConfig, shard_all, split_samples, write_part
from text_mining import schema as tm_schema
from webvision_example import make_example


@pytest.fixture(scope="module")
def tar_release(tmp_path_factory):
    """example_v1's release (same arguments) with its training images in 3 archives."""
    out = tmp_path_factory.mktemp("tars") / "webvision1"
    make_example(out, classes=8, images_per_class=16, seed=3, version="1.0", train_tars=3)
    return out


def _samples(split_dir):
    urls = [str(split_dir / name) for name in schema.read_sizes(split_dir)]
    return {s["__key__"]: (s["json"], s["cls"], s["jpg"]) for s in wds.WebDataset(urls, shardshuffle=False)}


def _members(archive):
    with tarfile.open(archive) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}


def _list_paths(root):
    return [l.split()[0] for l in (root / "info" / "train_filelist_all.txt").read_text().splitlines()]


def test_example_writes_the_training_images_as_archives(tar_release, example_v1):
    archives = sorted(tar_release.glob("webvision_train_*.tar"))
    assert [a.name for a in archives] == [f"webvision_train_{i:02d}.tar" for i in range(3)]
    members = {}
    for a in archives:
        members.update(_members(a))
    paths = _list_paths(tar_release)
    assert sorted(members) == sorted(paths)
    assert all(members[p] == (example_v1 / p).read_bytes() for p in paths)   # the folders' images
    assert not (tar_release / "google").exists() and (tar_release / "val_images_256").is_dir()


def test_example_archives_are_byte_identical_and_bad_counts_refused(tar_release, tmp_path):
    from conftest import REPO
    again = tmp_path / "again"
    make_example(again, classes=8, images_per_class=16, seed=3, version="1.0", train_tars=3)
    for a in sorted(tar_release.glob("webvision_train_*.tar")):
        assert (again / a.name).read_bytes() == a.read_bytes()
    res = subprocess.run([sys.executable, "-m", "webvision_example", "--out", str(tmp_path / "x"),
                          "--train-tars", "-1"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and "train_tars must be an integer >= 0" in res.stderr


def test_shards_from_archives_equal_shards_from_files(tar_release, example_v1, mined_v1, tmp_path):
    cfg = ShardConfig(max_size=200_000)
    files = shard_all(example_v1, mined_v1, tmp_path / "files", cfg, splits=["train"], workers=1, num_parts=2)
    tars = shard_all(tar_release, mined_v1, tmp_path / "tars", cfg, splits=["train"], workers=2, num_parts=2)
    a, b = _samples(tmp_path / "files" / "train"), _samples(tmp_path / "tars" / "train")
    assert len(a) == pq.read_table(mined_v1 / tm_schema.IMAGES_FILE).num_rows
    assert a == b                                     # keys, labels and image bytes
    assert tars["train"]["samples"] == files["train"]["samples"] and tars["train"]["skipped"] == 0
    parts = [json.loads(p.read_text()) for p in sorted((tmp_path / "tars" / "train" / "_parts").glob("*.json"))]
    assert [(p["start"], p["end"]) for p in parts] == [(0, 1), (1, 3)]   # whole archives per part
    # a done part is not read again: its archives may even be gone
    samples = split_samples("train", tar_release, mined_v1)
    (tar_release / "webvision_train_00.tar").rename(tmp_path / "moved.tar")
    try:
        assert write_part("train", samples, tar_release, tmp_path / "tars", cfg, 0, 2) == parts[0]
    finally:
        (tmp_path / "moved.tar").rename(tar_release / "webvision_train_00.tar")


def test_missing_truncated_and_corrupt(tar_release, mined_v1, tmp_path):
    root = tmp_path / "r"
    make_example(root, classes=8, images_per_class=16, seed=3, version="1.0", train_tars=3)
    a0, a1, a2 = sorted(root.glob("webvision_train_*.tar"))
    # archive 0 loses one listed image (rewritten without it)
    m0 = _members(a0)
    gone = sorted(m0)[0]
    with tarfile.open(a0, "w") as tf:
        for name in sorted(m0):
            if name != gone:
                info = tarfile.TarInfo(name)
                info.size = len(m0[name])
                tf.addfile(info, io.BytesIO(m0[name]))
    # archive 1 is cut in the middle of a member's data
    m1 = _members(a1)
    data = a1.read_bytes()
    a1.write_bytes(data[: len(data) // 2 + 100])
    # archive 2: bytes flipped inside one member's image data (a JPEG without its end marker)
    with tarfile.open(a2) as tf:
        victim = tf.getmembers()[1]
    raw = bytearray(a2.read_bytes())
    end = victim.offset_data + victim.size
    raw[end - 2:end] = b"\x00\x00"
    a2.write_bytes(bytes(raw))
    out = tmp_path / "s"
    report = shard_all(root, mined_v1, out, ShardConfig(), splits=["train"], workers=1, num_parts=3)["train"]
    pr = report["problems"]
    missing = set(pr["files"]["missing_image"])
    assert gone in missing and missing - {gone} <= set(m1)   # and what follows the cut in archive 1
    assert list(pr["files"]["bad_archive"]) == [str(a1)] and pr["counts"]["bad_archive"] == 1
    assert any("truncated or corrupt" in e for e in pr["examples"]["bad_archive"])
    assert pr["counts"]["truncated_image"] == 1 and victim.name in pr["examples"]["truncated_image"][0]
    stored = {json.loads(j)["path"] for j, _, _ in _samples(out / "train").values()}
    read_of_1 = stored & set(m1)
    assert 0 < len(read_of_1) < len(m1)   # what precedes the cut is kept
    assert gone not in stored and victim.name not in stored
    assert missing - {gone} == set(m1) - read_of_1 - {_cut(pr)}
    assert report["samples"] + report["skipped"] == len(_list_paths(root))   # the cut member: bad_archive
    for _, _, jpg in _samples(out / "train").values():
        Image.open(io.BytesIO(jpg)).load()


def _cut(problems):
    """The member whose data the cut archive lost (bad_archive's example names it)."""
    return problems["examples"]["bad_archive"][0].split(":")[1]


def test_an_archive_that_is_no_tar_is_refused(tar_release, mined_v1, tmp_path):
    from conftest import REPO
    root = tmp_path / "r"
    make_example(root, classes=8, images_per_class=16, seed=3, version="1.0", train_tars=2)
    bad = root / "webvision_train_02.tar"
    bad.write_bytes(b"<!DOCTYPE html><html>403 Forbidden</html>" * 40)
    res = subprocess.run([sys.executable, "-m", "pipeline", "shard", "--webvision", str(root), "--labels",
                          str(mined_v1), "--out", str(tmp_path / "s"), "--split", "train"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2, res.stderr
    errors = [l for l in res.stderr.splitlines() if "0/2 [" not in l and l.strip()]   # not the progress bar
    assert len(errors) == 1 and errors[0].startswith(f"error: {bad}: not a tar archive")
    assert "Traceback" not in res.stderr


def test_path_index_is_small_exact_under_collisions_and_keeps_the_last_of_a_repeated_path(monkeypatch):
    import tracemalloc

    import pyarrow as pa

    from pipeline import release_tars
    from pipeline.release_tars import PathIndex

    paths = pa.array([f"google/q{i // 500:05d}/{i:06d}.jpg" for i in range(200_000)])
    tracemalloc.start()
    index = PathIndex(paths)
    size, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert size / len(paths) < 40, f"{size / len(paths):.0f} bytes a row"   # a {path: row} dict: ~150
    assert index.row("google/q00007/003999.jpg") == 3999 and index.row("google/q00007/nope.jpg") is None
    # every hash the same: found by the path itself; a repeated path is its last row, the first shadowed
    monkeypatch.setattr(release_tars, "_hash", lambda path: 7)
    index = PathIndex(pa.array(["a.jpg", "b.jpg", "a.jpg", "c.jpg"]))
    assert [index.row(p) for p in ("a.jpg", "b.jpg", "c.jpg", "d.jpg")] == [2, 1, 3, None]
    assert index.shadowed.tolist() == [True, False, False, False]


def test_a_part_reads_only_its_own_archives_and_the_merge_names_what_none_held(tar_release, mined_v1, tmp_path,
                                                                               monkeypatch):
    """Part 0 of 3 opens its own archive only (no walk over the others' headers); an image that
    no archive holds is named by the merge, and with on_error=fail the merge stops on it."""
    from pipeline import release_tars
    from pipeline.shards import merge_split
    from webtag.problems import InputError

    root = tmp_path / "r"
    make_example(root, classes=8, images_per_class=16, seed=3, version="1.0", train_tars=3)
    archives = sorted(root.glob("webvision_train_*.tar"))
    m2 = _members(archives[2])
    gone = sorted(m2)[0]
    with tarfile.open(archives[2], "w") as tf:   # the last archive loses one listed image
        for name in sorted(m2):
            if name != gone:
                info = tarfile.TarInfo(name)
                info.size = len(m2[name])
                tf.addfile(info, io.BytesIO(m2[name]))
    opened = []
    real_open = tarfile.open
    def spy(*a, **k):   # the archives the shard writer opens (other tarfile users pass fileobj=)
        name = a[0] if a else k.get("name")
        if name is not None and str(name).endswith(".tar"):
            opened.append(Path(name))
        return real_open(*a, **k)
    monkeypatch.setattr(release_tars.tarfile, "open", spy)
    samples = split_samples("train", root, mined_v1)
    for on_error in ("skip", "fail"):
        out = tmp_path / f"s-{on_error}"
        for part in range(3):
            opened.clear()
            write_part("train", samples, root, out, ShardConfig(on_error=on_error), part, 3)
            assert opened == [archives[part]], (part, opened)
        if on_error == "fail":
            with pytest.raises(InputError, match=gone):
                merge_split(out, "train")
            assert not (out / "train" / schema.SIZES_FILE).exists()
        else:
            report = merge_split(out, "train")
            assert list(report["problems"]["files"]["missing_image"]) == [gone]
            assert report["samples"] + report["skipped"] == len(_list_paths(root))
