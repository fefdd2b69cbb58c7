"""Every kind of bad input is counted with its file named, or stops the run with --on-error fail;
nothing already written is lost."""
import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CONFIG, REPO, example_config
from text_mining import schema
from text_mining.count import count_part
from text_mining.problems import InputError
from text_mining.runner import run_all
from text_mining.vocabulary import build_vocabulary


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def _meta_entry(root, i):
    jpath, row = _lines(root / "info" / "train_meta_list_all.txt")[i].split()
    return root / jpath, int(row)


def _image_with_own_json(root, start=0):
    """An image index whose JSON file is referenced by no earlier image."""
    metas = [l.split()[0] for l in _lines(root / "info" / "train_meta_list_all.txt")]
    for i in range(start, len(metas)):
        if metas[i] not in metas[:i]:
            return i
    raise AssertionError


def corrupt(root, kind):
    """Inject one kind of bad input; returns (file the report must name, list line or None)."""
    info = root / "info"
    files = _lines(info / "train_filelist_all.txt")
    metas = _lines(info / "train_meta_list_all.txt")
    if kind == "bad_json":                      # malformed: not JSON at all
        path, _ = _meta_entry(root, _image_with_own_json(root, 5))
        path.write_text("{ this is : not json ]", encoding="utf-8")
        return path, None
    if kind == "truncated_json":                # cut mid-record
        path, _ = _meta_entry(root, _image_with_own_json(root, 30))
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
        return path, None
    if kind == "missing_json":
        path, _ = _meta_entry(root, _image_with_own_json(root, 60))
        path.unlink()
        return path, None
    if kind == "row_out_of_range":
        last = len(metas) - 1                   # a Flickr image: its JSON is not corrupted above
        jpath, _ = metas[last].split()
        metas[last] = f"{jpath} 999"
        (info / "train_meta_list_all.txt").write_text("\n".join(metas) + "\n")
        return info / "train_meta_list_all.txt", last + 1
    if kind == "non_utf8":
        path, row = _meta_entry(root, 11)
        raw = path.read_bytes()
        data = json.loads(raw)
        data[row - 1]["title"] = "caf\u00e9 MARKER"
        raw = json.dumps(data, ensure_ascii=False).encode("utf-8").replace("caf\u00e9".encode(), b"caf\xe9")
        path.write_bytes(raw)
        return path, None
    if kind == "empty_text":
        path, row = _meta_entry(root, 3)
        data = json.loads(path.read_text(encoding="utf-8"))
        data[row - 1].update(title=None, description="", tags=[])
        path.write_text(json.dumps(data), encoding="utf-8")
        return path, None
    if kind == "duplicate_image":
        with open(info / "train_filelist_all.txt", "a") as fh:
            fh.write(files[2] + "\n")
        with open(info / "train_meta_list_all.txt", "a") as fh:
            fh.write(metas[2] + "\n")
        return info / "train_filelist_all.txt", len(files) + 1
    if kind == "missing_image":
        (root / files[4].split()[0]).unlink()
        return info / "train_filelist_all.txt", 5
    if kind == "bad_list_line":
        files[9] = "this line has no class id at all"
        (info / "train_filelist_all.txt").write_text("\n".join(files) + "\n")
        return info / "train_filelist_all.txt", 10
    raise ValueError(kind)


KIND_OF = {"truncated_json": "bad_json"}
KINDS = ["bad_json", "truncated_json", "missing_json", "row_out_of_range", "non_utf8", "empty_text",
         "duplicate_image", "missing_image", "bad_list_line"]


@pytest.fixture
def bad_copy(example_v1, tmp_path):
    """A copy of the example whose only bad input is what a test injects: the generator leaves
    ~2% of records with no text at all (as on the web), which would trip --on-error fail first."""
    root = tmp_path / "webvision"
    shutil.copytree(example_v1, root)
    for path in list(root.glob("google/*.json")) + list(root.glob("flickr/*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for rec in data:
            if not (rec.get("title") or rec.get("description") or rec.get("tags")):
                rec["title"] = "a photo"
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return root


@pytest.mark.parametrize("case", KINDS)
def test_fail_mode_names_file_and_record(bad_copy, tmp_path, case):
    path, line = corrupt(bad_copy, case)
    out = tmp_path / "out"
    cfg = example_config("reader.on_error=fail")
    with pytest.raises(InputError) as exc:
        count_part(bad_copy, out, cfg, 0, 1, show_progress=False)
        build_vocabulary(bad_copy, out, cfg)   # duplicates are found when all parts meet
    msg = str(exc.value)
    assert str(path) in msg and f"[{KIND_OF.get(case, case)}]" in msg
    if line is not None:
        assert f"{path}:{line}:" in msg
    assert not (out / "_work" / "vocabulary").exists()


def test_skip_mode_counts_every_kind(bad_copy, example_v1, tmp_path):
    expected = {case: corrupt(bad_copy, case) for case in KINDS}
    out = tmp_path / "out"
    report = run_all(bad_copy, out, example_config(), workers=1, num_parts=2)
    problems = report["problems"]
    for case, (path, line) in expected.items():
        kind = KIND_OF.get(case, case)
        assert problems["counts"].get(kind, 0) >= 1, kind
        assert str(path) in problems["files"][kind], (kind, problems["files"][kind])
    assert problems["counts"]["bad_json"] == 2 and problems["counts"]["missing_json"] == 1
    images = pq.read_table(out / schema.IMAGES_FILE).to_pydict()
    n_good = len(_lines(example_v1 / "info" / "train_filelist_all.txt"))
    # dropped: the duplicate, the missing image and the malformed list line
    assert len(images["key"]) == n_good - 2 and len(set(images["key"])) == n_good - 2
    # the truncated file's first records were salvaged; the non-UTF-8 title was read
    md = (out / schema.REPORT_MD).read_text()
    assert "salvaged" in md and "duplicate_image" in md
    # weights stay valid for images that lost their text
    assert all(abs(sum(w) - 1) < 1e-5 for w in images["label_weights"])


def test_failed_part_keeps_finished_parts(bad_copy, tmp_path):
    out = tmp_path / "out"
    count_part(bad_copy, out, example_config(), 0, 2, show_progress=False)
    done = out / "_work" / "count" / "part-00000-of-00002"
    before = {p.name: p.read_bytes() for p in done.iterdir()}
    files = _lines(bad_copy / "info" / "train_filelist_all.txt")
    (bad_copy / files[-1].split()[0]).unlink()            # an image of part 1 goes missing
    cmd = [sys.executable, "-m", "text_mining", "count", "--webvision", str(bad_copy), "--out", str(out),
           "--config", str(EXAMPLE_CONFIG), "--part", "1", "--num-parts", "2", "--on-error", "fail"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2
    assert "error:" in res.stderr and "train_filelist_all.txt" in res.stderr and "missing_image" in res.stderr
    assert {p.name: p.read_bytes() for p in done.iterdir()} == before
    assert sorted(p.name for p in (out / "_work" / "count").iterdir()) == ["part-00000-of-00002"]
    # the same part with skip then finishes, next to the untouched part 0
    count_part(bad_copy, out, example_config(), 1, 2, show_progress=False)
    assert {p.name: p.read_bytes() for p in done.iterdir()} == before
