"""The web-data reader (text_mining/webdata.py): img2dataset tars and image-text tables with the
user's class list, and its bad input (one-line errors naming the file and record, exit 2)."""
import csv
import io
import json
import subprocess
import sys
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO
from text_mining.config import ReaderConfig
from text_mining.problems import InputError, Problems
from text_mining.release_files import ReleaseError
from text_mining.webdata import WebData

WNIDS = ["n02084071", "n02121808"]   # dog, domestic cat


def _classes(tmp_path, lines=WNIDS, name="synsets.txt"):
    path = tmp_path / name
    path.write_text("".join(w + "\n" for w in lines))
    return path


def _tar(path, samples):
    """samples: (key, {ext: bytes}) in order."""
    with tarfile.open(path, "w") as tf:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def _sample(key, caption, status="success", label=None):
    meta = {"url": f"http://x/{key}.jpg", "key": key, "status": status}
    if label:
        meta["label"] = label
    return key, {"jpg": b"\xff\xd8jpeg", "txt": caption.encode(), "json": json.dumps(meta).encode()}


def _reader(root, classes, on_error="skip"):
    problems = Problems(on_error)
    data = WebData(root, ReaderConfig(class_list=str(classes)))
    return data, list(data.iter_records(0, data.total, problems)), problems


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "text_mining", "count", *map(str, args),
                           "--part", "0", "--num-parts", "1"], capture_output=True, text=True, cwd=REPO)


def test_img2dataset_tars_labels_status_and_class_names(tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    _tar(web / "00000.tar", [_sample("a", "my dog in the park"), _sample("b", "a sleepy house cat"),
                             _sample("c", "whatever", label="n02121808"), _sample("d", "dog", status="failed")])
    _tar(web / "00001.tar", [_sample("e", "sunset over the sea")])
    data, recs, problems = _reader(web, _classes(tmp_path))
    assert data.total == 5 and [c.name for c in data.classes][:1] == ["dog"]     # names from WordNet
    assert [(r.key, r.class_id, r.query_id, r.path) for r in recs] == [
        ("a", 0, 0, "00000.tar/a.jpg"), ("b", 1, 1, "00000.tar/b.jpg"), ("c", 1, 1, "00000.tar/c.jpg")]
    assert recs[0].title == "my dog in the park" and data.query_text("web", 1) == "domestic cat"
    assert problems.to_dict()["counts"] == {"no_label": 1}       # "e"; "d" failed: no sample
    # parts read the records one read does
    parts = [r.key for lo, hi in ((0, 2), (2, 5)) for r in data.iter_records(lo, hi, Problems())]
    assert parts == ["a", "b", "c"]


def test_tables_csv_and_parquet(tmp_path):
    with open(tmp_path / "t.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "title", "description", "label"])
        w.writerows([["img/1.jpg", "Rex", "a good dog", ""], ["img/2.jpg", "Tom", "?", "n02084071"],
                     ["img/3.jpg", "Tom", "", "1"]])
    _, recs, _ = _reader(tmp_path / "t.csv", _classes(tmp_path))
    assert [(r.path, r.class_id, r.description) for r in recs] == [
        ("img/1.jpg", 0, "a good dog"), ("img/2.jpg", 0, "?"), ("img/3.jpg", 1, "")]
    pq.write_table(pa.table({"url": ["http://x/1.jpg"], "caption": ["a house cat"], "tags": [["cat", "pet"]]}),
                   tmp_path / "t.parquet")
    _, recs, _ = _reader(tmp_path / "t.parquet", _classes(tmp_path))
    assert recs[0].class_id == 1 and recs[0].tags == ("cat", "pet") and recs[0].title == "a house cat"


def test_bad_samples_are_counted_or_fatal(tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    no_txt = ("b", {"jpg": b"x", "json": b'{"key": "b", "status": "success", "label": "n02084071"}'})
    _tar(web / "00000.tar", [_sample("a", "dog"), no_txt, ("c", {"jpg": b"x", "txt": b"dog", "json": b"{oops"}),
                             _sample("d", "dog", label="n99999999")])
    _, recs, problems = _reader(web, _classes(tmp_path))
    assert [r.key for r in recs] == ["a"]
    assert problems.to_dict()["counts"] == {"missing_caption": 1, "bad_json": 1, "unknown_class": 1}
    with pytest.raises(InputError, match=r"00000.tar:b: sample b has no .txt caption"):
        _reader(web, _classes(tmp_path), on_error="fail")
    res = _cli("--webdata", web, "--classes", _classes(tmp_path), "--out", tmp_path / "o", "--on-error", "fail")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: ") and "00000.tar:b" in res.stderr


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    _tar(web / "00000.tar", [_sample("a", "dog")])
    bad_classes = _classes(tmp_path, [WNIDS[0], "n00000042"], "bad_synsets.txt")
    with pytest.raises(ReleaseError, match=r"bad_synsets.txt:2: n00000042 is not a WordNet 3.0 noun synset"):
        WebData(web, ReaderConfig(class_list=str(bad_classes)))
    pq.write_table(pa.table({"image": ["1.jpg"], "label": ["0"]}), tmp_path / "nocap.parquet")
    cases = [
        (("--webdata", web, "--classes", bad_classes), "n00000042 is not a WordNet 3.0 noun synset"),
        (("--webdata", tmp_path / "nocap.parquet", "--classes", _classes(tmp_path)), "nocap.parquet: no caption column"),
        (("--webdata", tmp_path / "empty", "--classes", _classes(tmp_path)), "no img2dataset tar shards"),
        (("--webdata", web), "--webdata needs --classes"),
        (("--webdata", web, "--classes", tmp_path / "nope.txt"), "nope.txt does not exist"),
    ]
    (tmp_path / "empty").mkdir()
    for i, (args, message) in enumerate(cases):
        res = _cli(*args, "--out", tmp_path / f"o{i}")
        assert res.returncode == 2, (args, res.stderr)
        assert message in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
