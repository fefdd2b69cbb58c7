"""The shard writer: real tars read back byte for byte, by plain webdataset and by timm."""
import io
import json
import shutil
import tarfile

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from pipeline import schema
from pipeline.shards import ShardConfig, merge_split, parse_size, shard_all, split_samples, write_part
from text_mining import schema as tm_schema
from webtag.problems import InputError


@pytest.fixture(scope="module")
def shards(mined_v1, example_v1, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "s"
    shard_all(example_v1, mined_v1, out, ShardConfig(max_size=parse_size("200KB")), workers=2, num_parts=3)
    return out


def _tar_samples(split_dir):
    urls = [str(split_dir / name) for name in schema.read_sizes(split_dir)]
    return list(wds.WebDataset(urls, shardshuffle=False))


def test_parse_size():
    assert parse_size("1GB") == 10**9 and parse_size("500MB") == 5 * 10**8
    assert parse_size("64KiB") == 65536 and parse_size(1234) == 1234
    with pytest.raises(ValueError):
        parse_size("lots")


def test_images_and_labels_read_back_identical(shards, mined_v1, example_v1):
    images = pq.read_table(mined_v1 / tm_schema.IMAGES_FILE).to_pylist()
    samples = _tar_samples(shards / "train")
    assert len(samples) == len(images)
    by_index = {r["index"]: r for r in images}
    for s in samples:
        labels = json.loads(s[schema.LABELS_EXT])
        row = by_index[labels["index"]]
        assert s["__key__"] == schema.sample_key(row["index"])
        assert s[schema.IMAGE_EXT] == (example_v1 / row["path"]).read_bytes()
        assert int(s[schema.CLASS_EXT]) == row["class_id"] == labels["class_id"]
        assert labels["keyword_ids"] == row["keyword_ids"] and labels["label_ids"] == row["label_ids"]
        assert labels["label_weights"] == pytest.approx(row["label_weights"])
        assert labels["key"] == row["key"] and labels["source"] == row["source"]


def test_manifest_and_sizes_describe_the_tars(shards):
    split = shards / "train"
    sizes = schema.read_sizes(split)
    manifest = pq.read_table(split / schema.MANIFEST_FILE).to_pylist()
    assert sum(sizes.values()) == len(manifest)
    assert len(sizes) > 3  # 200KB shards: the example needs several
    for name, n in sizes.items():
        with tarfile.open(split / name) as tar:
            members = tar.getnames()
        keys = [m.split(".")[0] for m in members if m.endswith(".jpg")]
        rows = [r for r in manifest if r["shard"] == name]
        assert len(keys) == n == len(rows)
        assert [r["key"] for r in sorted(rows, key=lambda r: r["position"])] == keys
        # complete samples only, in webdataset's member order
        assert all(m.split(".")[1] in ("cls", "jpg", "json") for m in members) and len(members) == 3 * n
    report = json.loads((split / schema.REPORT_FILE).read_text())
    assert report["samples"] == len(manifest) and report["skipped"] == 0


def test_validation_shards(shards, example_v1):
    val = _tar_samples(shards / "val")
    listing = (example_v1 / "info" / "val_filelist.txt").read_text().split("\n")
    listing = [l.split() for l in listing if l.strip()]
    assert len(val) == len(listing)
    for s in val:
        labels = json.loads(s["json"])
        name, cls = listing[labels["index"]]
        assert int(s["cls"]) == int(cls) and labels["label_ids"] == [int(cls)]
        assert s["jpg"] == (example_v1 / "val_images_256" / name).read_bytes()


def test_timm_reads_our_shards(shards):
    from timm.data import create_dataset
    names = list(schema.read_sizes(shards / "train"))
    ds = create_dataset("wds/webtag", root=str(shards / "train"), split=names[0], is_training=False,
                        batch_size=1)
    img, target = next(iter(ds))
    assert isinstance(img, Image.Image) and isinstance(target, int)


def test_parts_rerun_and_resize(mined_v1, example_v1, tmp_path):
    out = tmp_path / "s"
    samples = split_samples("train", example_v1, mined_v1)
    cfg = ShardConfig(resize_shorter=100, quality=85)
    for part in range(2):
        write_part("train", samples, example_v1, out, cfg, part, 2)
    before = {p: p.read_bytes() for p in (out / "train").rglob("*") if p.is_file()}
    write_part("train", samples, example_v1, out, cfg, 1, 2)       # done: a no-op
    assert {p: p.read_bytes() for p in (out / "train").rglob("*") if p.is_file()} == before
    merge_split(out, "train")
    got = _tar_samples(out / "train")
    assert len(got) == samples.num_rows
    for s in got:
        w, h = Image.open(io.BytesIO(s["jpg"])).size
        assert min(w, h) <= 100
    report = json.loads((out / "train" / schema.REPORT_FILE).read_text())
    assert report["resized"] > 0
    # byte-identical when written again from scratch
    again = tmp_path / "again"
    for part in range(2):
        write_part("train", samples, example_v1, again, cfg, part, 2)
    names = sorted(p.name for p in (out / "train").glob("*.tar"))
    assert all((again / "train" / n).read_bytes() == (out / "train" / n).read_bytes() for n in names)


def _break_images(root):
    files = [l.split()[0] for l in (root / "info" / "train_filelist_all.txt").read_text().splitlines()]
    bad = {}
    (root / files[1]).unlink()
    bad[files[1]] = "missing_image"
    (root / files[2]).write_bytes(b"")
    bad[files[2]] = "empty_image"
    data = (root / files[3]).read_bytes()
    (root / files[3]).write_bytes(data[: len(data) // 2])
    bad[files[3]] = "truncated_image"
    (root / files[4]).write_bytes(b"<!DOCTYPE html><html>403 Forbidden</html>")   # no image format
    bad[files[4]] = "not_image"
    data = bytearray((root / files[5]).read_bytes())
    data[200:1200] = bytes(1000)  # corrupt the headers and scan data, keep the end marker
    (root / files[5]).write_bytes(bytes(data))
    bad[files[5]] = "bad_image"
    return bad


def test_bad_images_are_skipped_and_counted(mined_v1, example_v1, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(example_v1, root)
    bad = _break_images(root)
    out = tmp_path / "s"
    report = shard_all(root, mined_v1, out, ShardConfig(), splits=["train"], workers=1, num_parts=2)["train"]
    counts = report["problems"]["counts"]
    for path, kind in bad.items():
        assert counts.get(kind) == 1, kind
        assert str(root / path) in report["problems"]["files"][kind]
    n = len(pq.read_table(mined_v1 / tm_schema.IMAGES_FILE))
    assert report["samples"] + report["skipped"] == n and report["skipped"] == 5
    stored = {json.loads(s["json"])["path"] for s in _tar_samples(out / "train")}
    assert not stored & set(bad)
    for s in _tar_samples(out / "train"):     # every stored sample decodes fully
        Image.open(io.BytesIO(s["jpg"])).load()


def test_the_default_check_refuses_bad_headers_and_keeps_damaged_pixels(mined_v1, example_v1, tmp_path):
    """validate=fast, the default: a scan header naming an undefined Huffman table (what the
    structural parse alone let through, and libjpeg refuses) is counted bad_image; bytes of the
    entropy-coded data changed, markers intact, are stored, and decode (grey blocks)."""
    assert ShardConfig().validate == "fast"
    root = tmp_path / "r"
    shutil.copytree(example_v1, root)
    files = [l.split()[0] for l in (root / "info" / "train_filelist_all.txt").read_text().splitlines()]
    header = bytearray((root / files[6]).read_bytes())
    sos = header.index(b"\xff\xda")
    header[sos + 6] = 0x33                              # the first scan component's tables: 3 and 3
    (root / files[6]).write_bytes(bytes(header))
    pixels = bytearray((root / files[7]).read_bytes())
    sos = pixels.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(pixels[sos + 2: sos + 4], "big")
    pixels[start + 10: start + 40] = bytes([0x5A] * 30)   # no 0xFF: no marker made or broken
    (root / files[7]).write_bytes(bytes(pixels))
    out = tmp_path / "s"
    report = shard_all(root, mined_v1, out, ShardConfig(), splits=["train"], workers=1, num_parts=1)["train"]
    assert report["problems"]["counts"] == {"bad_image": 1}
    assert list(report["problems"]["files"]["bad_image"]) == [str(root / files[6])]
    stored = {json.loads(s["json"])["path"]: s["jpg"] for s in _tar_samples(out / "train")}
    assert stored[files[7]] == bytes(pixels)
    for data in stored.values():   # every stored sample decodes fully
        Image.open(io.BytesIO(data)).convert("RGB").load()


def test_fail_mode_names_the_image(mined_v1, example_v1, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(example_v1, root)
    files = [l.split()[0] for l in (root / "info" / "train_filelist_all.txt").read_text().splitlines()]
    (root / files[7]).write_bytes(b"<html>404 Not Found</html>")
    out = tmp_path / "s"
    samples = split_samples("train", root, mined_v1)
    with pytest.raises(InputError, match=files[7].replace(".", r"\.") + r".*not an image \(HTML"):
        write_part("train", samples, root, out, ShardConfig(on_error="fail"), 0, 1)
    leftovers = [p.name for p in (out / "train").iterdir() if p.name != "_parts"]
    assert leftovers == [] and list((out / "train" / "_parts").iterdir()) == []


def test_split_folder_is_a_split_of_the_shards_root(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        (tmp_path / split / schema.SIZES_FILE).write_text("{}")
    assert schema.split_folder(tmp_path, "val") == tmp_path / "val"
    with pytest.raises(ValueError, match=f"is a split folder .*--shards {tmp_path} --split train"):
        schema.split_folder(tmp_path / "train", "train")
    with pytest.raises(ValueError, match="no finished split 'test'.*its splits: train, val"):
        schema.split_folder(tmp_path, "test")


def test_cli_shard_and_loader_check(mined_v1, example_v1, tmp_path):
    import subprocess
    import sys
    from conftest import REPO
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "pipeline", "shard", "--webvision", str(example_v1), "--labels", str(mined_v1),
           "--out", str(out), "--max-size", "300KB", "--workers", "2", "max_count=40"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    sizes = schema.read_sizes(out / "train")
    assert max(sizes.values()) <= 40 and (out / "val" / schema.SIZES_FILE).exists()
    res = subprocess.run([sys.executable, "-m", "pipeline", "loader-check", "--shards", str(out),
                          "--batch-size", "16", "--workers", "2", "image_size=32"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "batches of 16" in res.stdout and "samples lost (corrupt or unreadable, against the manifest): 0" in res.stdout
    assert res.stdout.startswith(f"{out / 'train'}: ")                     # --split train by default
    res = subprocess.run([sys.executable, "-m", "pipeline", "loader-check", "--shards", str(out / "val")],
                         capture_output=True, text=True, cwd=REPO)   # a split folder, not the root
    assert res.returncode == 2 and f"--shards {out} --split val" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = subprocess.run(cmd[:-1] + ["max_cont=40"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and "max_count" in res.stderr
