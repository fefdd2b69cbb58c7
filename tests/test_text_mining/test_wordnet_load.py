"""load_wordnet's fast reading of WordNet's index files gives NLTK's own lemma index and satellite
set, in the same order."""
import warnings
from pathlib import Path

import pytest
from nltk.corpus.reader.wordnet import WordNetCorpusReader

from text_mining import wordnet as wordnet_mod


def test_index_and_satellites_equal_nltk(wn):
    assert type(wn)._load_lemma_pos_offset_map is wordnet_mod._load_lemma_pos_offset_map
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The multilingual functions")
        plain = WordNetCorpusReader(wn.root, None)   # NLTK's own loading, line by line
    assert wn.satellite_offsets == plain.satellite_offsets and len(plain.satellite_offsets) > 10000
    assert list(wn._lemma_pos_offset_map) == list(plain._lemma_pos_offset_map)
    for lemma, by_pos in plain._lemma_pos_offset_map.items():
        assert list(wn._lemma_pos_offset_map[lemma].items()) == list(by_pos.items()), lemma
    assert wn.synsets("dogs")[0].name() == "dog.n.01"
    assert [s.name() for s in wn.synsets("glad", "s")] == [s.name() for s in plain.synsets("glad", "s")]


def test_unexpected_index_line_gets_nltks_error(wn, tmp_path, monkeypatch):
    import nltk
    from nltk.corpus.reader.wordnet import WordNetError
    from nltk.data import FileSystemPathPointer
    folder = tmp_path / "wordnet"
    folder.mkdir()
    for f in Path(wn.root.path).iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    text = (folder / "index.adv").read_text()
    (folder / "index.adv").write_text(text + "broken r 2 0 1 0 00001\n")   # 2 synsets, 1 sense
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)] + nltk.data.path)
    with pytest.raises(WordNetError, match="index.adv, line"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The multilingual functions")
            type(wn)(FileSystemPathPointer(str(folder)), None)


def test_tagged_senses_equal_a_plain_parse(wn):
    from text_mining.keywords import _SS_POS, tagged_senses
    from text_mining.wordnet import read_lines
    counts = {key: int(cnt) for key, _num, cnt in (line.split() for line in read_lines(wn, "cntlist.rev"))
              if cnt != "0"}
    expected = {}
    for line in read_lines(wn, "index.sense"):
        key, off = line.split(maxsplit=2)[:2]
        if counts.get(key):
            name, rest = key.split("%", 1)
            expected.setdefault((_SS_POS[rest[0]], int(off)), []).append((name, counts[key]))
    assert tagged_senses(wn) == expected and len(expected) > 20000
    assert list(tagged_senses(wn)) == list(expected)
