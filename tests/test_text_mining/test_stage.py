"""The whole stage: outputs and schemas, map-reduce equivalence, reruns, killed parts."""
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CONFIG, REPO, example_config
from text_mining import schema
from text_mining.count import count_part
from text_mining.layout import Layout, OutputMismatch
from text_mining.runner import run_all
from text_mining.tag import tag_part
from webvision_example import make_example


def test_outputs_and_schemas(mined_v1, example_v1):
    images = schema.read_table(mined_v1 / schema.IMAGES_FILE, schema.IMAGES)
    vocab = schema.read_table(mined_v1 / schema.VOCABULARY_FILE, schema.VOCABULARY)
    classes = schema.read_table(mined_v1 / schema.CLASSES_FILE, schema.CLASSES)
    kc = schema.read_table(mined_v1 / schema.KEYWORD_CLASSES_FILE, schema.KEYWORD_CLASSES)
    n_list = len((example_v1 / "info" / "train_filelist_all.txt").read_text().splitlines())
    assert images.num_rows == n_list
    assert images["index"].to_pylist() == list(range(n_list))
    assert len(set(images["key"].to_pylist())) == n_list
    assert vocab["id"].to_pylist() == list(range(vocab.num_rows))
    assert kc.num_rows == vocab.num_rows
    assert classes["wnid"].to_pylist() == [l.split()[0] for l in
                                           (example_v1 / "info" / "synsets.txt").read_text().splitlines()]
    v = vocab.num_rows
    assert all(0 <= k < v for ids in images["keyword_ids"].to_pylist() for k in ids)
    meta = schema.table_metadata(mined_v1 / schema.IMAGES_FILE)
    assert meta["webtag.tagger"] == "wordnet-lexicon" and meta["webtag.release"] == "1.0"
    kc_meta = pq.read_schema(mined_v1 / schema.KEYWORD_CLASSES_FILE).metadata
    assert kc_meta[schema.META_RELEASE] == b"1.0" and kc_meta[schema.META_MEASURE]
    extract = next((mined_v1 / "_work" / "count").glob("part-*")) / "extract.parquet"
    assert pq.read_schema(extract).metadata[schema.META_TAGGER] == b"wordnet-lexicon"
    with pytest.raises(KeyError, match="no text-mining table metadata 'tager'"):
        schema.with_metadata(schema.IMAGES, tager="nltk")
    report = schema.read_report(mined_v1)
    assert report["tagger"] == "wordnet-lexicon"
    s = report["stats"]
    assert s["images"] == n_list and s["vocabulary_size"] == v
    assert 1.0 < s["mean_keywords_per_image"] < 10
    assert s["own_class_top1_share"] >= 0.8
    assert (mined_v1 / schema.KEYWORD_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Text mining report" in (mined_v1 / schema.REPORT_MD).read_text()
    assert (mined_v1 / schema.CONFIG_FILE).exists()
    # the query text of each image is its query's words
    q = dict(zip(images["query_id"].to_pylist(), images["query"].to_pylist()))
    first = (example_v1 / "info" / "queries_google.txt").read_text().splitlines()[0].split(" ", 1)
    assert q[int(first[0])] == first[1].replace("+", " ")


def _tables(out):
    return {name: pq.read_table(out / name) for name in
            (schema.IMAGES_FILE, schema.VOCABULARY_FILE, schema.CLASSES_FILE, schema.KEYWORD_CLASSES_FILE)}


def test_map_reduce_equivalence(mined_v1, example_v1, tmp_path):
    """Three parts in two processes give the same Parquet as one part in one process."""
    out = tmp_path / "three"
    run_all(example_v1, out, example_config(), workers=2, num_parts=3)
    one, three = _tables(mined_v1), _tables(out)
    for name in one:
        a, b = one[name], three[name]
        assert a.schema.equals(b.schema, check_metadata=True), name
        assert a.to_pydict() == b.to_pydict(), name
    assert schema.read_report(out)["num_parts"] == 3


def test_rerun_is_a_no_op(mined_v1, example_v1):
    files = sorted(p for p in mined_v1.rglob("*") if p.is_file())
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    run_all(example_v1, mined_v1, example_config(), workers=1, num_parts=1)
    count_part(example_v1, mined_v1, example_config(), 0, 1)
    tag_part(example_v1, mined_v1, example_config(), 0, 1)
    after = sorted(p for p in mined_v1.rglob("*") if p.is_file())
    assert after == files
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in after} == before


def test_steps_refuse_a_different_config_or_missing_parts(mined_v1, example_v1, tmp_path):
    with pytest.raises(OutputMismatch, match="different config"):
        count_part(example_v1, mined_v1, example_config("vocabulary.min_df=3"), 0, 2)
    out = tmp_path / "o"
    count_part(example_v1, out, example_config(), 0, 2)
    from text_mining.vocabulary import build_vocabulary
    with pytest.raises(OutputMismatch, match=r"parts \[1\] of 2"):
        build_vocabulary(example_v1, out, example_config())
    with pytest.raises(OutputMismatch, match="run them before tagging"):
        tag_part(example_v1, out, example_config(), 0, 2)
    count_part(example_v1, out, example_config(), 1, 2)
    with pytest.raises(OutputMismatch, match="part count of count"):
        tag_part(example_v1, out, example_config(), 0, 3)
    with pytest.raises(OutputMismatch, match="vocabulary"):
        tag_part(example_v1, out, example_config(), 0, 2)


def test_killed_part_leaves_no_visible_output(tmp_path):
    """SIGKILL a count part mid-way: no part folder appears; the rerun finishes it."""
    root = tmp_path / "big"
    make_example(root, classes=40, images_per_class=1000, seed=1, images=False)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "text_mining", "count", "--webvision", str(root), "--out", str(out),
           "--config", str(EXAMPLE_CONFIG), "--part", "0", "--num-parts", "1"]
    env = dict(os.environ, WEBTAG_LOG="INFO")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    # wait until it reads records, then kill it without warning
    deadline = time.time() + 120
    for line in proc.stderr:
        if "WebVision" in line and "layout" in line:
            break
        assert time.time() < deadline
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the part finished before it could be killed"
    layout = Layout(out)
    assert layout.done_parts("count") == (None, [])
    visible = [p for p in (out / "_work" / "count").iterdir() if not p.name.startswith(".")]
    assert visible == []
    report = count_part(root, out, example_config(), 0, 1, show_progress=False)
    assert report["images"] == 40_000
    assert [p.name for p in (out / "_work" / "count").iterdir()] == ["part-00000-of-00001"]
