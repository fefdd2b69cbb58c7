"""Keyword extraction on tricky web strings, with both part-of-speech filters."""
import json

import nltk
import pytest

from text_mining.config import KeywordConfig
from text_mining.keywords import (NLTK_TAGGER_RESOURCE, TAGGER_NLTK, TAGGER_WORDNET, KeywordExtractor,
                                  NltkTaggerFilter, WordNetLexiconFilter, clean_text, make_pos_filter,
                                  tokenize)


@pytest.fixture(scope="module")
def ex(wn):
    return KeywordExtractor(KeywordConfig(tagger="wordnet"), wn)


def test_cleaning_removes_markup_urls_and_codes():
    text = clean_text("Tom &amp;amp; Jerry &lt;b&gt;bold&lt;/b&gt; <a href='http://x.org/a'>link</a> "
                      "see https://flic.kr/p/2abc www.example.com/page.html mail me@example.org "
                      "#GoldenRetriever #sunset")
    assert "&" not in text.replace("Tom & Jerry", "") and "<" not in text
    assert "http" not in text and "www" not in text and "example" not in text and "@" not in text
    assert "Golden Retriever" in text and "sunset" in text and "#" not in text
    assert tokenize("the dog's toys, IMG_2345 DSC01234 2014 mp3") == \
        ["the", "dog", "toys", "IMG", "2345", "DSC01234", "2014", "mp3"]


@pytest.mark.parametrize("title,expected", [
    ("Cute Golden Retriever dogs on the beach!!", ["cute", "golden", "retriever", "dog", "beach"]),
    ("&lt;b&gt;Red&lt;/b&gt; cars &amp;amp; trucks", ["red", "car", "truck"]),
    ("IMG_2345 DSC01234 2014 12:30 mp3 ...", []),
    ("http://www.flickr.com/photos/abc/123 www.site.de me@mail.com", []),
    ("#GoldenRetriever #puppylove", ["golden", "retriever"]),
    ("the and of is was were being", []),
    ("Der Hund 可爱的狗 🐶 собака", []),
    ("running quickly", []),                      # verb and adverb readings dominate
    ("glasses of wine, mice and geese", ["glass", "wine", "mouse", "goose"]),
    ("", []),
])
def test_extract_tricky_titles(ex, title, expected):
    assert ex.extract(title, None or "", ()) == expected


def test_fields_tags_and_duplicates(ex):
    kws = ex.extract("Dog", "A dog in the park", ["dog", "park", "golden retriever", ""])
    assert kws == ["dog", "dog", "park", "dog", "park", "golden", "retriever"]
    only_title = KeywordExtractor(KeywordConfig(tagger="wordnet", fields=["title"]), ex.pos.wn)
    assert only_title.extract("Dog", "A cat", ["bird"]) == ["dog"]
    with pytest.raises(ValueError, match="unknown field"):
        KeywordExtractor(KeywordConfig(tagger="wordnet", fields=["body"]), ex.pos.wn)


def test_length_bounds_and_long_text(wn):
    e = KeywordExtractor(KeywordConfig(tagger="wordnet", min_length=4, max_chars=20), wn)
    # 20 characters: "big cat tiger zebra " -> one zebra of fifty; "big" and "cat" too short
    assert e.extract("big cat tiger " + "zebra " * 50) == ["tiger", "zebra"]


def _install_tiny_tagger(root):
    """Train NLTK's averaged perceptron on a few sentences and install it like nltk.download does."""
    from nltk.tag.perceptron import PerceptronTagger
    sents = [
        [("The", "DT"), ("cute", "JJ"), ("dog", "NN"), ("runs", "VBZ"), ("on", "IN"), ("the", "DT"), ("beach", "NN")],
        [("A", "DT"), ("red", "JJ"), ("car", "NN"), ("drives", "VBZ"), ("quickly", "RB")],
        [("Dogs", "NNS"), ("love", "VBP"), ("green", "JJ"), ("parks", "NNS")],
        [("We", "PRP"), ("run", "VBP"), ("with", "IN"), ("the", "DT"), ("happy", "JJ"), ("puppy", "NN")],
        [("Birds", "NNS"), ("fly", "VBP"), ("over", "IN"), ("the", "DT"), ("old", "JJ"), ("tree", "NN")],
    ] * 4
    tagger = PerceptronTagger(load=False)
    tagger.train(sents, nr_iter=8)
    folder = root / NLTK_TAGGER_RESOURCE
    folder.mkdir(parents=True)
    for obj, name in zip(tagger.encode_json_obj(), tagger.param_files("eng")):
        (folder / name).write_text(json.dumps(obj))


def test_nltk_tagger_used_when_installed(wn, tmp_path, monkeypatch):
    assert isinstance(make_pos_filter(KeywordConfig(tagger="auto"), wn), WordNetLexiconFilter)
    with pytest.raises(RuntimeError, match="averaged_perceptron_tagger_eng"):
        make_pos_filter(KeywordConfig(tagger="nltk"), wn)
    _install_tiny_tagger(tmp_path)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)] + list(nltk.data.path))
    pos = make_pos_filter(KeywordConfig(tagger="auto"), wn)
    assert isinstance(pos, NltkTaggerFilter) and pos.name == TAGGER_NLTK
    e = KeywordExtractor(KeywordConfig(tagger="auto"), wn, pos)
    # context decides: verbs and adverbs go, nouns (lemmatised) and adjectives stay
    assert e.extract("The cute dog runs on the beach") == ["cute", "dog", "beach"]
    assert e.extract("Dogs love green parks") == ["dog", "green", "park"]
    # the forced fallback still works with the tagger installed
    assert make_pos_filter(KeywordConfig(tagger="wordnet"), wn).name == TAGGER_WORDNET
