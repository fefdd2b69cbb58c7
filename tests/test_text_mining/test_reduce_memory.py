"""reduce.memory_mb bounds what the reduce steps (and the map steps' parts) hold: a cap that forces
the out-of-core paths on tiny data (hash partitions spilled to disk, counts added up a few parts
at a time, the extract written and tagged in batches, images copied one row group at a time) gives
the same outputs, byte for byte, as the in-memory paths."""
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import example_config
from text_mining import count as count_mod, merge as merge_mod, schema, spill, tag as tag_mod, vocabulary
from text_mining.runner import run_all

TABLES = (schema.IMAGES_FILE, schema.VOCABULARY_FILE, schema.CLASSES_FILE, schema.KEYWORD_CLASSES_FILE)


@pytest.fixture
def with_duplicates(example_v1, tmp_path):
    """The example with three records listed again (at the end of the train list)."""
    root = tmp_path / "webvision"
    shutil.copytree(example_v1, root)
    info = root / "info"
    files = (info / "train_filelist_all.txt").read_text().splitlines()
    metas = (info / "train_meta_list_all.txt").read_text().splitlines()
    with open(info / "train_filelist_all.txt", "a") as fh:
        fh.write("\n".join(files[i] for i in (2, 40, 2)) + "\n")
    with open(info / "train_meta_list_all.txt", "a") as fh:
        fh.write("\n".join(metas[i] for i in (2, 40, 2)) + "\n")
    return root


def _spy_partitions(monkeypatch) -> list:
    seen = []
    real = spill.HashPartitions.__init__

    def init(self, n, *a, **kw):
        seen.append(n)
        real(self, n, *a, **kw)
    monkeypatch.setattr(spill.HashPartitions, "__init__", init)
    return seen


def test_a_memory_cap_forces_out_of_core_with_identical_outputs(with_duplicates, tmp_path, monkeypatch):
    big = tmp_path / "in_memory"
    run_all(with_duplicates, big, example_config(), workers=1, num_parts=3)
    # a record "costs" 50 kB: 1 MB holds 20 records (a part's counts table ~100 keywords), so the
    # duplicate search takes many partitions and the counts are added up part by part
    monkeypatch.setattr(vocabulary, "DUP_ROW_BYTES", 50_000)
    monkeypatch.setattr(vocabulary, "COUNT_ROW_BYTES", 10_000)
    monkeypatch.setattr(merge_mod, "ROW_GROUP", 7)
    monkeypatch.setattr(count_mod, "COUNT_ROW_BYTES", 100_000)   # 10 records a row group
    monkeypatch.setattr(tag_mod, "TAG_ROW_BYTES", 80_000)        # 13 images a batch
    seen = _spy_partitions(monkeypatch)
    reduces = []
    real_concat = pa.concat_tables
    monkeypatch.setattr(vocabulary.pa, "concat_tables", lambda ts, *a, **k: reduces.append(len(ts)) or real_concat(ts, *a, **k))
    small = tmp_path / "capped"
    run_all(with_duplicates, small, example_config("reduce.memory_mb=1"), workers=1, num_parts=3)
    assert seen and seen[0] > 5, seen                    # the duplicate search was partitioned
    assert len(reduces) >= 2, reduces                     # the counts were reduced more than once
    assert not list((small / "_work").glob(".spill-*"))   # the spill files are gone
    extract = pq.ParquetFile(next((small / "_work" / "count").glob("part-*")) / "extract.parquet")
    assert extract.num_row_groups > 2 and extract.metadata.row_group(0).num_rows == 10
    tagged = pq.ParquetFile(next((small / "_work" / "tag").glob("part-*")) / "images.parquet")
    assert tagged.num_row_groups > 2
    for name in TABLES + ("_work/vocabulary/duplicates.parquet",):
        assert (big / name).read_bytes() == (small / name).read_bytes(), name
    a, b = (json.loads((d / schema.REPORT_JSON).read_text()) for d in (big, small))
    assert a["problems"] == b["problems"] and a["stats"] == b["stats"]
    for step in ("count", "tag"):   # the parts' reports too (their timings aside)
        for pa_, pb in zip(*(sorted((d / "_work" / step).glob("part-*")) for d in (big, small))):
            ra, rb = (json.loads((p / "report.json").read_text()) for p in (pa_, pb))
            assert {**ra, "seconds": 0} == {**rb, "seconds": 0}
    assert a["problems"]["counts"]["duplicate_image"] == 3 and a["stats"]["duplicates_dropped"] == 3
    # the recorded config does not depend on the cap: a step may be rerun with another one
    assert (big / "_work" / "config.yaml").read_text() == (small / "_work" / "config.yaml").read_text()


def test_duplicates_in_partitions_are_those_found_in_memory(tmp_path):
    """find_duplicates over hash partitions: the same indices and the same problems, in order."""
    from text_mining.problems import Problems

    class Seg:
        filelist = "list.txt"

    class FakeRelease:
        def locate(self, idx):
            return Seg, idx + 1

    rng = np.random.default_rng(0)
    keys = [f"k{v}" for v in rng.integers(0, 300, size=1000)]
    parts = []
    for i, (lo, hi) in enumerate([(0, 400), (400, 401), (401, 1000)]):
        d = tmp_path / f"p{i}"
        d.mkdir()
        pq.write_table(pa.table({"index": np.arange(lo, hi, dtype=np.int64), "key": keys[lo:hi]}),
                       d / "extract.parquet")
        parts.append(d)
    results = []
    for memory_mb, row_bytes in [(1 << 20, 320), (1, 50_000)]:
        vocabulary.DUP_ROW_BYTES, saved = row_bytes, vocabulary.DUP_ROW_BYTES
        try:
            problems = Problems()
            idx = vocabulary.find_duplicates(FakeRelease(), parts, problems, memory_mb, tmp_path / "spill")
        finally:
            vocabulary.DUP_ROW_BYTES = saved
        results.append((idx.tolist(), problems.to_dict()))
    first_seen, expected = set(), []
    for i, k in enumerate(keys):
        if k in first_seen:
            expected.append(i)
        first_seen.add(k)
    assert results[0][0] == expected
    assert results[0] == results[1]


def test_concat_images_writes_the_bytes_of_whole_parts(tmp_path):
    """Copying a row group at a time gives the file that writing each part whole gave."""
    files = []
    for i, n in enumerate([23, 0, 7, 5, 14]):
        t = pa.table({"index": np.arange(n, dtype=np.int64),
                      "keyword_ids": [list(range(j % 4)) for j in range(n)]},
                     schema=pa.schema([("index", pa.int64()), ("keyword_ids", pa.list_(pa.int32()))]))
        pq.write_table(t, tmp_path / f"{i}.parquet")
        files.append(tmp_path / f"{i}.parquet")
    with pq.ParquetWriter(tmp_path / "whole.parquet", pq.read_schema(files[0])) as w:
        for f in files:
            w.write_table(pq.read_table(f), row_group_size=7)
    hist = merge_mod.concat_images(files, tmp_path / "streamed.parquet", rows=7)
    assert (tmp_path / "whole.parquet").read_bytes() == (tmp_path / "streamed.parquet").read_bytes()
    lengths = [len(x) for x in pq.read_table(tmp_path / "whole.parquet")["keyword_ids"].to_pylist()]
    assert np.trim_zeros(hist, "b").tolist() == np.bincount(lengths).tolist()


def test_order_statistics_give_numpy_percentiles_to_the_last_bit():
    """The report's percentiles from two histogram passes equal np.percentile on all the values
    (float32 weights, many ties at 0, few distinct values), without holding them."""
    rng = np.random.default_rng(1)
    qs = (0, 10, 25, 33.3, 50, 75, 90, 100)
    for trial in range(60):
        x = rng.random(int(rng.integers(1, 2000))).astype(np.float32).astype(np.float64)
        if trial % 3 == 1:
            x[rng.random(len(x)) < 0.6] = 0.0
        if trial % 3 == 2:
            x = np.round(x, 2).astype(np.float32).astype(np.float64)
        chunks = np.array_split(x, 4)
        s = spill.OrderStatistics()
        for c in chunks:
            s.add(c)
        s.need(qs)
        for c in chunks:
            s.refine(c)
        assert s.exact and [s.percentile(q) for q in qs] == [float(np.percentile(x, q)) for q in qs]
    s = spill.OrderStatistics()
    s.add(np.array([0.1, 0.5]))          # 0.1 is no float32: the caller must hold the values
    assert not s.exact


def test_weight_distribution_matches_the_in_memory_percentiles(mined_v1, monkeypatch):
    from text_mining import report
    exact = report.weight_distribution(mined_v1 / schema.IMAGES_FILE)
    monkeypatch.setattr(spill.OrderStatistics, "add", lambda self, x: (setattr(self, "exact", False),
                                                                     setattr(self, "n", self.n + len(x))))
    held = report.weight_distribution(mined_v1 / schema.IMAGES_FILE)   # the fallback: every value held
    assert exact == held and exact["top_weight"]["p50"] is not None
