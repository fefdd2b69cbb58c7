"""count's per-keyword table (counted per row group with Arrow) equals the counts of its extract's
rows, whatever the row groups."""
import collections

import pyarrow.parquet as pq

from conftest import example_config
from text_mining import count
from text_mining.layout import Layout


def _outputs(out):
    part = Layout(out).part_dir("count", 0, 1)
    return pq.read_table(part / "extract.parquet"), pq.read_table(part / "counts.parquet"), part


def test_counts_equal_the_extract_rows(example_v1, tmp_path, monkeypatch):
    cfg = example_config("reduce.memory_mb=1")
    count.count_part(example_v1, tmp_path / "one", cfg, 0, 1, show_progress=False)
    monkeypatch.setattr(count, "COUNT_ROW_BYTES", 50_000)   # 1 MB: 20 rows a row group
    count.count_part(example_v1, tmp_path / "many", cfg, 0, 1, show_progress=False)
    extract_one, counts_one, _ = _outputs(tmp_path / "one")
    extract, counts, part = _outputs(tmp_path / "many")
    assert pq.ParquetFile(part / "extract.parquet").num_row_groups > 5
    assert extract.equals(extract_one) and counts.equals(counts_one)
    occ, df = collections.Counter(), collections.Counter()
    for kws, cnts in zip(extract["keywords"].to_pylist(), extract["keyword_counts"].to_pylist()):
        assert len(kws) == len(set(kws)) == len(cnts) and min(cnts, default=1) >= 1
        for k, c in zip(kws, cnts):
            occ[k] += c
            df[k] += 1
    assert len(occ) > 20
    words = sorted(occ)
    assert counts.column("keyword").to_pylist() == words
    assert counts.column("count").to_pylist() == [occ[w] for w in words]
    assert counts.column("df").to_pylist() == [df[w] for w in words]
