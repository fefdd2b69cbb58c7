"""The WordNet lexicon filter's fast paths (text_mining/morphy.py, the quick rejection, the isalpha
check) give exactly NLTK's morphology and the reference decisions."""
import random
import string
import sys

import pytest

from text_mining.config import KeywordConfig
from text_mining.keywords import WordNetLexiconFilter, _TokenFilter
from text_mining.morphy import SUBSTITUTIONS, Morphy

POS = ("n", "a", "v", "r")


@pytest.fixture(scope="module")
def lexicon(wn):
    return WordNetLexiconFilter(KeywordConfig(tagger="wordnet"), wn)


@pytest.fixture(scope="module")
def vocabulary(wn):
    """Every lemma, every exception form and its bases, every form a suffix rule maps onto a
    lemma (dogs, churches, bigger, ...)."""
    words = set(wn._lemma_pos_offset_map)
    for exc in wn._exception_map.values():
        for form, bases in exc.items():
            words.add(form)
            words.update(bases)
    for lemma, by_pos in list(wn._lemma_pos_offset_map.items()):
        for pos in by_pos:
            for old, new in SUBSTITUTIONS.get(pos, ()):
                if lemma.endswith(new):
                    words.add(lemma[:len(lemma) - len(new)] + old)
    return sorted(words)


def misspellings(words, n, seed=0):
    """Made-up web tokens: lemmas with a letter dropped, doubled, swapped or changed, a suffix
    added, foreign letters; and random letter strings."""
    rng = random.Random(seed)
    letters = string.ascii_lowercase + "éüßøçñ"
    suffixes = ["s", "es", "ies", "ves", "ed", "ing", "er", "est", "men", "ches", "ly", "'s"]
    out = []
    for _ in range(n):
        w = rng.choice(words)
        i = rng.randrange(len(w) + 1)
        op = rng.randrange(6)
        if op == 0:
            w = w[:i] + w[i + 1:]
        elif op == 1:
            w = w[:i] + rng.choice(letters) + w[i:]
        elif op == 2:
            w = w[:i] + rng.choice(letters) + w[i + 1:]
        elif op == 3:
            w = w + rng.choice(suffixes)
        elif op == 4:
            w = w[:i] + rng.choice(suffixes)
        else:
            w = "".join(rng.choice(letters) for _ in range(rng.randint(1, 12)))
        out.append(w)
    return out


def decide_reference(filt, low):
    """``WordNetLexiconFilter._decide`` as it was before the fast paths: NLTK's ``_morphy`` for all
    four parts of speech, no early exits."""
    if not filt.ok(low):
        return None
    counts, lemma = {}, {}
    index, tagged = filt.wn._lemma_pos_offset_map, filt.tagged
    for pos in POS:
        forms = filt.wn._morphy(low, pos)
        if not forms:
            continue
        lemma[pos] = min(forms, key=len)
        total = 0
        for form in forms:
            for off in index[form].get(pos, ()):
                for name, cnt in tagged.get((pos, off), ()):
                    if name in forms:
                        total += cnt
        counts[pos] = total + 1
    noun, adj = counts.get("n", 0), counts.get("a", 0)
    if max(noun, adj) == 0 or max(noun, adj) < max(counts.get("v", 0), counts.get("r", 0)):
        return None
    best = lemma["n"] if noun >= adj else lemma["a"]
    return best if filt.ok(best) else None


def test_forms_equal_nltk_morphy(wn, vocabulary):
    morphy = Morphy(wn)
    tokens = vocabulary + misspellings(vocabulary, 20000)
    assert len(vocabulary) > 350000
    for tok in tokens:
        for pos in POS:
            assert morphy.forms(tok, pos) == wn._morphy(tok, pos), (tok, pos)
    assert morphy.forms("churches", "n") == ["church"] and morphy.forms("geese", "n") == ["goose"]


def test_quick_rejection_only_without_noun_and_adjective_forms(wn, vocabulary):
    morphy = Morphy(wn)
    rejected = 0
    for tok in vocabulary + misspellings(vocabulary, 50000, seed=1):
        if morphy.no_noun_or_adjective(tok):
            rejected += 1
            assert not wn._morphy(tok, "n") and not wn._morphy(tok, "a"), tok
    assert rejected > 20000   # it does reject the made-up tokens


def test_decisions_equal_reference(lexicon, vocabulary):
    tokens = vocabulary[::3] + misspellings(vocabulary, 30000, seed=2)
    kept = 0
    for tok in tokens:
        got = lexicon._decide(tok)
        assert got == decide_reference(lexicon, tok), tok
        kept += got is not None
    assert kept > 10000


def test_decisions_equal_nltk_calls(lexicon, vocabulary):
    rng = random.Random(3)
    for tok in rng.sample(vocabulary, 150) + misspellings(vocabulary, 150, seed=4):
        assert lexicon._decide(tok) == lexicon.decide_nltk(tok), tok


def test_ok_isalpha_shortcut_is_exact():
    filt = _TokenFilter(KeywordConfig(min_length=1))

    def ok_reference(low):
        return (filt.min_len <= len(low) <= filt.max_len and low not in filt.stop
                and not any(c.isdigit() or c in "'\u2019" for c in low))

    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        if 0xD800 <= cp < 0xE000:
            continue
        word = "x" + c
        assert filt.ok(word) == ok_reference(word), hex(cp)


def test_keywords_cache_by_token_as_written(wn, vocabulary):
    filt = WordNetLexiconFilter(KeywordConfig(tagger="wordnet"), wn)
    rng = random.Random(5)
    words = rng.sample(vocabulary, 300) + misspellings(vocabulary, 300, seed=6)
    tokens = [rng.choice([w, w.upper(), w.title(), w + "'S"]) for w in words for _ in range(3)]
    expected = [kw for kw in (decide_reference(filt, t.lower()) for t in tokens) if kw is not None]
    assert filt.keywords(tokens) == expected and filt.keywords(tokens) == expected
    assert filt.keywords(["Dogs", "DOGS", "dogs", "running"]) == ["dog", "dog", "dog"]
    assert set(filt.cache) == {t.lower() for t in tokens} | {"dogs", "running"}


def test_one_morphology_for_every_caller(wn, monkeypatch):
    """The similarity tables, the query terms and NLTK's tagger's lemmas use the reader's one
    Morphy (morphy_of), not NLTK's _morphy: same answers with NLTK's made unusable."""
    from text_mining import vocabulary
    from text_mining.keywords import NltkTaggerFilter
    from text_mining.morphy import morphy_of
    from text_mining.similarity import Taxonomy

    words = ["dogs", "churches", "geese", "running", "xqzt", "Penguins"]
    tax = Taxonomy(wn)
    senses = {w: [s.offset() for s in wn.synsets(w, "n")] for w in words}
    terms = {w: (min(f, key=len) if (f := wn._morphy(w, "n")) else w) for w in words}
    lemmas = {w: (min(f, key=len) if (f := wn._morphy(w.lower(), "a")) else w.lower()) for w in words}
    assert morphy_of(wn) is morphy_of(wn)

    def refused(*args, **kwargs):
        raise AssertionError("NLTK's _morphy was called")
    monkeypatch.setattr(wn, "_morphy", refused)
    tagger = NltkTaggerFilter(KeywordConfig(), wn, tagger=None)
    for w in words:
        assert tax.noun_senses(w) == senses[w], w
        assert vocabulary._term(wn, w) == terms[w], w
        assert tagger._lemma(w.lower(), "a") == lemmas[w], w
