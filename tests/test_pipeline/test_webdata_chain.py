"""img2dataset-style web data through the command lines: the example generator's --img2dataset
output -> text mining (--webdata, --classes) -> shard writer reading the tars directly -> a tiny
pretraining run."""
import csv
import json
import os
import subprocess
import sys
import tarfile

import pyarrow.parquet as pq

from conftest import EXAMPLE_CONFIG, PRETRAIN_EXAMPLE, REPO, pretrain_overrides


def run(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, f"{args}\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    return res.stdout + res.stderr


def test_img2dataset_output_to_pretraining(tmp_path):
    web, mined, shards, pt = (tmp_path / n for n in ("web", "mined", "shards", "pretrain"))
    run("webvision_example", "--img2dataset", web, "--classes", "3", "--images-per-class", "8")
    assert sorted(p.name for p in web.iterdir())[:3] == ["00000.parquet", "00000.tar", "00000_stats.json"]
    run("text_mining", "run", "--webdata", web, "--classes", web / "synsets.txt", "--out", mined,
        "--workers", "2", "--config", EXAMPLE_CONFIG)
    images = pq.read_table(mined / "images.parquet").to_pylist()
    report = json.loads((mined / "report.json").read_text())
    # 24 samples: the 12 labelled ones kept, unlabelled ones by the class name in their caption,
    # the rest dropped and counted
    dropped = report["problems"]["counts"].get("no_label", 0)
    assert len(images) + dropped == 24 and len(images) >= 12
    assert all(r["source"] == "web" and r["path"].startswith("0000") and ".tar/" in r["path"] for r in images)
    wnids = (web / "synsets.txt").read_text().split()
    classes = pq.read_table(mined / "classes.parquet").to_pylist()
    assert [c["wnid"] for c in classes] == wnids and all(c["words"] for c in classes)   # names from WordNet
    with tarfile.open(web / "00000.tar") as tf:
        first = json.loads(tf.extractfile("000000000.json").read())
        assert images[0]["class_id"] == wnids.index(first["label"])

    run("pipeline", "shard", "--webdata", web, "--labels", mined, "--out", shards, "--max-count", "8",
        "--workers", "1")
    assert not (shards / "val").exists()
    manifest = pq.read_table(shards / "train" / "manifest.parquet")
    assert manifest.num_rows == len(images)
    shard = shards / "train" / manifest["shard"][0].as_py()
    with tarfile.open(shard) as out, tarfile.open(web / "00000.tar") as src:
        labels = json.loads(out.extractfile(f"{manifest['key'][0].as_py()}.json").read())
        packed = out.extractfile(f"{manifest['key'][0].as_py()}.jpg").read()
        assert packed == src.extractfile(labels["path"].split("/", 1)[1]).read()   # bytes kept

    run("pretrain", "train", "--config", PRETRAIN_EXAMPLE, *pretrain_overrides(shards, mined, pt),
        "train.max_steps=2")
    assert (pt / "backbone.safetensors").exists() and (pt / "finished.json").exists()


def _csv_table(tmp_path):
    """data/table.csv of image files (data/img/KEY.jpg), captions and some labels, from the
    example's img2dataset output (returned too)."""
    web = tmp_path / "web"
    run("webvision_example", "--img2dataset", web, "--classes", "2", "--images-per-class", "4")
    table = tmp_path / "data" / "table.csv"
    (table.parent / "img").mkdir(parents=True)
    wnids = (web / "synsets.txt").read_text().split()
    rows = [["image", "caption", "label"]]
    with tarfile.open(web / "00000.tar") as tf:
        for m in tf.getmembers():
            if m.name.endswith(".json"):
                meta = json.loads(tf.extractfile(m).read())
                key = meta["key"]
                (table.parent / "img" / f"{key}.jpg").write_bytes(tf.extractfile(f"{key}.jpg").read())
                rows.append([f"img/{key}.jpg", meta["caption"],
                             wnids.index(meta["label"]) if "label" in meta else ""])
    with open(table, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return web, table


def test_a_csv_table_of_image_files_to_shards(tmp_path):
    mined, shards = tmp_path / "mined", tmp_path / "shards"
    web, table = _csv_table(tmp_path)
    run("text_mining", "run", "--webdata", table, "--classes", web / "synsets.txt", "--out", mined,
        "--workers", "1", "--config", EXAMPLE_CONFIG)
    images = pq.read_table(mined / "images.parquet").to_pylist()
    assert len(images) >= 4 and all(r["path"].startswith("img/") for r in images)
    run("pipeline", "shard", "--webdata", table, "--labels", mined, "--out", shards, "--workers", "1")
    manifest = pq.read_table(shards / "train" / "manifest.parquet")
    report = json.loads((shards / "train" / "report.json").read_text())
    assert manifest.num_rows == len(images) and report["skipped"] == 0
    with tarfile.open(shards / "train" / manifest["shard"][0].as_py()) as out:
        labels = json.loads(out.extractfile(f"{manifest['key'][0].as_py()}.json").read())
        assert out.extractfile(f"{manifest['key'][0].as_py()}.jpg").read() == \
            (table.parent / labels["path"]).read_bytes()


def test_a_csv_table_at_a_url_to_shards(tmp_path, bucket):
    """The table and its image files on S3 (moto on loopback): text mining and the shard writer
    read them from there (paths relative to the table's folder) and write what they write locally."""
    from webtag.remote_copy import publish_tree
    web, table = _csv_table(tmp_path)
    publish_tree(table.parent, f"{bucket}/data")
    url = f"{bucket}/data/table.csv"
    for where, src in (("local", table), ("s3", url)):
        run("text_mining", "run", "--webdata", src, "--classes", web / "synsets.txt", "--out", tmp_path / f"mined-{where}",
            "--workers", "1", "--config", EXAMPLE_CONFIG)
        run("pipeline", "shard", "--webdata", src, "--labels", tmp_path / f"mined-{where}", "--out",
            tmp_path / f"shards-{where}", "--workers", "1")
    local, remote = (pq.read_table(tmp_path / f"shards-{w}" / "train" / "manifest.parquet") for w in ("local", "s3"))
    assert remote.num_rows == local.num_rows > 0
    assert remote.select(["key", "class_id", "bytes"]).equals(local.select(["key", "class_id", "bytes"]))
    report = json.loads((tmp_path / "shards-s3" / "train" / "report.json").read_text())
    assert report["skipped"] == 0
    # a local table whose image column holds URLs: each image read from its own URL
    rows = list(csv.reader(open(table, newline="", encoding="utf-8")))
    urls = tmp_path / "urls.csv"
    with open(urls, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([rows[0]] + [[f"{bucket}/data/{r[0]}", *r[1:]] for r in rows[1:]])
    run("text_mining", "run", "--webdata", urls, "--classes", web / "synsets.txt", "--out", tmp_path / "mined-urls",
        "--workers", "1", "--config", EXAMPLE_CONFIG)
    run("pipeline", "shard", "--webdata", urls, "--labels", tmp_path / "mined-urls", "--out", tmp_path / "shards-urls",
        "--workers", "1")
    by_url = pq.read_table(tmp_path / "shards-urls" / "train" / "manifest.parquet")
    assert by_url.select(["key", "class_id", "bytes"]).equals(local.select(["key", "class_id", "bytes"]))
