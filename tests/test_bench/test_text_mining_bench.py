"""bench/text_mining.py and its realistic text model keep working (tiny inputs; figures reported,
their values not checked)."""
import json
import re
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from realistic_text import WordModel, extend_record, word_types  # noqa: E402

LEMMAS = [f"{a}{b}" for a in ("dog", "cat", "bird", "tree", "lake", "car", "house", "river")
          for b in ("", "fish", "wood", "stone", "berry", "fly", "light", "wort")]


def test_distinct_tokens_grow_with_the_corpus():
    """Heaps' law: each tenfold of text brings many new distinct words (the example text saturates)."""
    model = WordModel(word_types(LEMMAS, 50_000, seed=1), seed=1)
    words = model.words(200_000)
    d_small, d_large = len(set(words[:20_000])), len(set(words))
    assert d_large > 2 * d_small
    counts = sorted((words.count(w) for w in set(words[:2000])), reverse=True)
    assert counts[0] > 50 * counts[len(counts) // 2]   # a few words everywhere, most rare


def test_word_types_hold_the_long_tail_kinds():
    types = word_types(LEMMAS, 5000, seed=0)
    assert len(types) == len(set(types)) == 5000
    assert any(t.startswith("#") for t in types) and any(t.startswith("http://") for t in types)
    assert any(t.isdigit() for t in types) and any(not t.isascii() for t in types)
    assert any(t not in LEMMAS and t[:-1] in LEMMAS for t in types)    # inflected or misspelt


def test_flickr_records_are_longer_than_google_records():
    model = WordModel(word_types(LEMMAS, 5000, seed=0), seed=0)
    g = [extend_record({"title": "Dog", "description": "a dog"}, "google", model) for _ in range(300)]
    f = [extend_record({"title": "Dog", "description": None, "tags": ["dog"]}, "flickr", model) for _ in range(300)]
    words = lambda recs: sum(len((r["title"] + " " + r["description"]).split()) for r in recs) / len(recs)  # noqa: E731
    assert words(f) > 2 * words(g)
    assert all(r["title"].startswith("Dog") and r["tags"][0] == "dog" and len(r["tags"]) >= 4 for r in f)


def test_text_mining_bench_runs(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "bench" / "text_mining.py"), "--records", "300",
                          "--classes", "5", "--workers", "1", "--types", "3000", "--baseline-records", "100",
                          "--workdir", str(tmp_path), "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert re.search(r"\d+ records \(realistic text\), 1 worker processes x \d+ threads", out), out
    for step in ("count \\(map\\)", "vocabulary \\(reduce\\)", "tag \\(map\\)", "merge \\(reduce\\)", "end to end"):
        assert re.search(step + r"\s+[\d.]+\s+\d+\s+[\d.]+\s+\d+", out), (step, out)
    assert re.search(r"distinct tokens, cache hit rate 0\.\d+\)", out), out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["total_cpu_seconds"] > 0 and rep["distinct_tokens"] > 0


def test_text_mining_bench_reports_peak_rss_per_step(tmp_path):
    """--rss-per-step: each step in its own process, its peak resident memory printed and saved;
    --workdir reuses the generated release; --set reaches the config."""
    cmd = [sys.executable, str(REPO / "bench" / "text_mining.py"), "--records", "200", "--classes", "4",
           "--workers", "1", "--types", "2000", "--baseline-records", "50", "--workdir", str(tmp_path),
           "--rss-per-step", "--set", "reduce.memory_mb=64", "--json", str(tmp_path / "r.json")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "peak RSS GB" in res.stdout and "generated" in res.stdout
    for step in ("count \\(map\\)", "vocabulary \\(reduce\\)", "tag \\(map\\)", "merge \\(reduce\\)"):
        assert re.search(step + r"\s+[\d.]+\s+\d+\s+[\d.]+\s+\d+\s+0\.\d{3}", res.stdout), (step, res.stdout)
    rss = json.loads((tmp_path / "r.json").read_text())["peak_rss_bytes"]
    assert all(50e6 < r["process"] < 8e9 for r in rss.values()), rss
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "generated" not in again.stdout   # the release was reused
