"""The count step's batch bookkeeping (text_mining/keyword_table.py) equals a per-record Counter:
each record's distinct keywords in order of first occurrence with their counts, the part's
occurrences and images per keyword; and the count step gives what the per-record extraction
gives, with the context-free filter and with a tagger that needs context."""
import collections
import random

import pyarrow.parquet as pq

from conftest import example_config
from text_mining import count, keywords
from text_mining.keyword_table import KeywordTable
from text_mining.keywords import KeywordExtractor, NltkTaggerFilter, WordNetLexiconFilter
from text_mining.layout import Layout
from text_mining.problems import Problems
from text_mining.webvision import Release


def _reference(records):
    """Per record: (distinct keywords in first-occurrence order, their counts)."""
    out = []
    for kws in records:
        c = collections.Counter(kws)
        out.append((list(c), list(c.values())))
    return out


def test_batches_equal_a_counter_per_record():
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(40)] + ["", "x"]   # "": a token without a keyword
    table = KeywordTable()
    occ, df = collections.Counter(), collections.Counter()
    for batch in range(6):
        records = [[rng.choice(vocab) for _ in range(rng.choice([0, 0, 1, 3, 20]))] for _ in range(rng.randint(0, 50))]
        resolve = lambda toks: [None if t == "x" else t.upper() for t in toks]   # noqa: E731
        items = [t for r in records for t in r]
        kw, cnt = table.add(items, [len(r) for r in records], resolve)
        expect = _reference([[t.upper() for t in r if t and t != "x"] for r in records])
        assert kw.to_pylist() == [e[0] for e in expect] and cnt.to_pylist() == [e[1] for e in expect]
        for words, counts in expect:
            occ.update(dict(zip(words, counts)))
            df.update(words)
    got = table.table()
    words = sorted(occ)
    assert got["keyword"].to_pylist() == words
    assert got["count"].to_pylist() == [occ[w] for w in words]
    assert got["df"].to_pylist() == [df[w] for w in words]
    assert table.total_occurrences() == sum(occ.values())


def _count_rows(out):
    part = Layout(out).part_dir("count", 0, 1)
    t = pq.read_table(part / "extract.parquet")
    return t["keywords"].to_pylist(), t["keyword_counts"].to_pylist()


def _extract_rows(release_root, extractor):
    release = Release(release_root, example_config().reader)
    return _reference([extractor.extract(r.title, r.description, r.tags)
                       for r in release.iter_records(0, release.total, Problems())])


def test_count_step_equals_per_record_extraction(example_v1, wn, tmp_path, monkeypatch):
    monkeypatch.setattr(count, "CHUNK_RECORDS", 7)   # many chunks, keyword ids grow across them
    cfg = example_config("reduce.memory_mb=1")
    monkeypatch.setattr(count, "COUNT_ROW_BYTES", 50_000)   # 20 rows a row group: chunks cut to fit
    count.count_part(example_v1, tmp_path / "out", cfg, 0, 1, show_progress=False)
    part = Layout(tmp_path / "out").part_dir("count", 0, 1)
    groups = pq.ParquetFile(part / "extract.parquet").metadata
    assert {groups.row_group(i).num_rows for i in range(groups.num_row_groups - 1)} == {20}
    expect = _extract_rows(example_v1, KeywordExtractor(cfg.keywords, wn))
    kws, cnts = _count_rows(tmp_path / "out")
    assert sum(map(len, kws)) > 100
    assert list(zip(kws, cnts)) == [tuple(e) for e in expect]


class ContextTagger:
    """A stand-in for NLTK's tagger whose tags depend on the neighbour: a word after "the" or
    "a" is a noun, any other word a verb."""

    def tag(self, tokens):
        return [(t, "NN" if i and tokens[i - 1].lower() in ("the", "a") else "VB") for i, t in enumerate(tokens)]


def test_count_step_with_a_context_tagger(example_v1, wn, tmp_path, monkeypatch):
    cfg = example_config()
    make = lambda kcfg, wn_: NltkTaggerFilter(kcfg, wn_, ContextTagger())   # noqa: E731
    monkeypatch.setattr(keywords, "make_pos_filter", make)
    count.count_part(example_v1, tmp_path / "out", cfg, 0, 1, show_progress=False)
    extractor = KeywordExtractor(cfg.keywords, wn, make(cfg.keywords, wn))
    assert not extractor.context_free
    expect = _extract_rows(example_v1, extractor)
    kws, cnts = _count_rows(tmp_path / "out")
    assert list(zip(kws, cnts)) == [tuple(e) for e in expect]
    # the tagger's context mattered: per token, the same words would give other keywords
    per_token = KeywordExtractor(cfg.keywords, wn, WordNetLexiconFilter(cfg.keywords, wn))
    assert any(k != e[0] for k, e in zip(kws, _extract_rows(example_v1, per_token)))
