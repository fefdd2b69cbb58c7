"""The command line, the 2.0 layout end to end, and WordNet installation."""
import subprocess
import sys

import nltk
import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CONFIG, REPO
from text_mining import schema
from text_mining.wordnet import DEBIAN_WORDNET, WordNetMissing, _load_wordnet, install_wordnet


def _run(*args):
    return subprocess.run([sys.executable, "-m", "text_mining", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def test_run_on_a_2_0_release(example_v2, tmp_path):
    out = tmp_path / "out"
    res = _run("run", "--webvision", example_v2, "--out", out, "--workers", "2",
               "--config", EXAMPLE_CONFIG, "weights.top_k=5")
    assert res.returncode == 0, res.stderr
    report = schema.read_report(out)
    assert report["release_version"] == "2.0" and report["query_map_base"] == 0
    images = pq.read_table(out / schema.IMAGES_FILE)
    assert images.num_rows == report["stats"]["images"] > 0
    assert max(len(x) for x in images["label_ids"].to_pylist()) <= 5
    assert "top_k: 5" in (out / schema.CONFIG_FILE).read_text()


def test_config_errors_are_clear(example_v2, tmp_path):
    res = _run("run", "--webvision", example_v2, "--out", tmp_path / "o", "vocabulary.min_dff=3")
    assert res.returncode == 2
    assert "vocabulary.min_dff" in res.stderr and "min_df" in res.stderr and "max_size" in res.stderr
    res = _run("count", "--webvision", tmp_path, "--out", tmp_path / "o", "--part", "0", "--num-parts", "1")
    assert res.returncode == 2 and "not a WebVision release" in res.stderr


def test_install_wordnet_is_idempotent(tmp_path):
    if not (DEBIAN_WORDNET / "data.noun").exists():
        pytest.skip("Debian's wordnet-base is not installed")
    for _ in range(2):
        target = install_wordnet(DEBIAN_WORDNET, tmp_path / "nltk_data")
    lexnames = (target / "lexnames").read_text().splitlines()
    assert len(lexnames) == 45 and lexnames[5] == "05\tnoun.animal\t1"
    assert not any(p.is_symlink() for p in target.iterdir())
    wn = _load_wordnet(str(tmp_path / "nltk_data"), -1)
    assert wn.synset_from_pos_and_offset("n", 1440764).name() == "tench.n.01"
    with pytest.raises(WordNetMissing, match="wordnet-base"):
        install_wordnet(tmp_path / "nowhere", tmp_path / "x")


def test_missing_wordnet_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    with pytest.raises(WordNetMissing) as exc:
        _load_wordnet(str(tmp_path / "empty"), -2)
    msg = str(exc.value)
    assert "apt-get install wordnet-base wordnet-sense-index" in msg
    assert "install-wordnet" in msg and "nltk.download('wordnet')" in msg
