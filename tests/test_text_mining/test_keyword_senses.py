"""The WordNet lexicon filter's in-memory sense counts decide as NLTK's own calls do (issue 19:
a new token cost ~0.8 ms of file reads through wn.synsets and Lemma.count)."""
import json

import pytest

from text_mining.config import KeywordConfig
from text_mining.keywords import WordNetLexiconFilter, clean_text, tokenize, tagged_senses
from text_mining.wordnet import load_wordnet


@pytest.fixture(scope="module")
def lexicon():
    return WordNetLexiconFilter(KeywordConfig(), load_wordnet(None))


def test_sense_counts_are_nltks_lemma_counts(lexicon):
    wn = lexicon.wn
    table = tagged_senses(wn)
    for word in ("dog", "run", "light", "scared", "bank"):
        for syn in wn.synsets(word):
            pos = "a" if syn.pos() == "s" else syn.pos()
            got = dict(table.get((pos, syn.offset()), ()))
            for lem in syn.lemmas():
                assert got.get(lem.name().lower(), 0) == lem.count(), (syn, lem)


def test_decisions_equal_nltks_on_web_text(lexicon, example_v1):
    """Every distinct token of the example release, plus inflections, satellites and non-words."""
    words = {"scared", "dogs", "running", "axes", "beautiful", "better", "leaves", "geese", "afraid",
             "oranutan", "fotografía", "фото", "bokeh", "iphone", "quickly", "was", "untagged"}
    for path in sorted(example_v1.rglob("q*.json"))[:30]:
        for rec in json.loads(path.read_text(encoding="utf-8")):
            for text in [rec.get("title"), rec.get("description"), *(rec.get("tags") or [])]:
                words.update(t.lower() for t in tokenize(clean_text(text or "")))
    assert len(words) > 200
    diff = [(w, lexicon._decide(w), lexicon.decide_nltk(w)) for w in sorted(words)
            if lexicon._decide(w) != lexicon.decide_nltk(w)]
    assert not diff
    assert lexicon._decide("scared") is None and lexicon._decide("dogs") == "dog"
