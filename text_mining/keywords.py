"""Keyword extraction (WT-Set): web text -> lemmatised nouns and adjectives.

Pipeline per text field: cut to ``max_chars`` -> HTML-unescape (repeatedly, web text is often
escaped twice) -> strip HTML tags -> remove URLs, e-mail addresses and file names -> split
hashtags (``#GoldenRetriever`` -> ``Golden Retriever``) -> tokenize on letters and digits ->
drop tokens with digits (numbers, camera codes), stopwords and tokens outside the length bounds
-> keep nouns and adjectives -> lemmatise.

Part-of-speech filters (the one used is recorded in the outputs' metadata):
- ``nltk-averaged-perceptron``: NLTK's tagger (the paper's choice), used when its model
  (``taggers/averaged_perceptron_tagger_eng``) is installed; tokens tagged NN*/JJ* are kept and
  lemmatised with WordNet's morphology.
- ``wordnet-lexicon``: the offline fallback. A token is kept when WordNet knows it as a noun or
  adjective and that reading is at least as frequent (SemCor tag counts of WordNet 3.0, +1 so
  that known but untagged words count) as its verb and adverb readings; the lemma is the one
  of the most frequent of noun/adjective. It is context-free, so it is computed once per
  distinct token and cached: this is what makes the stage fast.
"""
from __future__ import annotations

import functools
import html
import logging
import re
from importlib import resources

from .config import KeywordConfig
from .morphy import morphy_of
from .wordnet import read_lines as _lines

log = logging.getLogger(__name__)

TAGGER_NLTK = "nltk-averaged-perceptron"
TAGGER_WORDNET = "wordnet-lexicon"
NLTK_TAGGER_RESOURCE = "taggers/averaged_perceptron_tagger_eng/"

_HTML_TAG = re.compile(r"<[^<>]{0,500}>")
_URL = re.compile(
    r"(?:\b[a-z][a-z0-9+.-]{1,15}://|\bwww\.)\S+"
    r"|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|info|biz|io|co|de|fr|uk|jp|ru|cn|it|es|nl"
    r"|html?|php|aspx?|jpe?g|png|gif|tiff?)\b(?:/\S*)?",
    re.IGNORECASE,
)
_HASHTAG = re.compile(r"#(\w+)")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_TOKEN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
_WORD = re.compile(r"\w+")   # _TOKEN on a text without _ and apostrophes


@functools.lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    text = resources.files("text_mining").joinpath("data/stopwords.txt").read_text(encoding="utf-8")
    return frozenset(w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#"))


def clean_text(text: str, max_chars: int = 2000) -> str:
    """Web text -> plain text without markup, URLs and hashtag marks."""
    text = text[:max_chars]
    for _ in range(3):
        if "&" not in text:
            break
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    if "<" in text:
        text = _HTML_TAG.sub(" ", text)
    if "." in text or "@" in text or ":" in text:
        text = _URL_RUN.sub(_strip_urls, " " + text)[1:]
    if "#" in text:
        text = _HASHTAG.sub(_split_hashtag, text)
    return text


# _URL.sub(" ", text), fast: _URL is tried at every character (~90 ns each: 1.6 s of CPU for the
# 18M characters of a 20k-record realistic release), this at whitespace only and on the runs it
# can match in (~0.4 s). A match of _URL holds no whitespace and has one of . @ : followed by a
# character that is not whitespace (://x, www.x, @x, .com), and \b at a run's edge sees
# whitespace or the text's end alike: so _URL.sub on each whitespace-free run with such a pair
# gives the same text (test_clean_text_fast.py compares the two). Requiring the pair, not just
# one of . @ :, spares the Python call for a word that ends a sentence ("dog."): 2.97 -> 2.54
# calls and 7.6 -> 7.2 us per realistic record.
_URL_RUN = re.compile(r"(\s)([^\s.@:]*+[.@:]\S++)")


def _strip_urls(m: re.Match) -> str:
    return m[1] + _URL.sub(" ", m[2])


def _split_hashtag(m: re.Match) -> str:
    return _hashtag_words(m[1])


@functools.lru_cache(maxsize=1 << 16)
def _hashtag_words(tag: str) -> str:
    """#GoldenRetriever -> " Golden Retriever " (web hashtags repeat: cached)."""
    return " " + (tag if tag.islower() else _CAMEL.sub(" ", tag)) + " "   # islower: no A-Z


def tokenize(text: str) -> list[str]:
    """Word tokens, case preserved; possessive 's removed."""
    if "_" in text:
        text = text.replace("_", " ")
    if "'" not in text and "\u2019" not in text:   # no possessives to remove
        return _WORD.findall(text)   # no _ left: \w+ is [^\W_]+, ~20% faster
    out = []
    for tok in _TOKEN.findall(text):
        if tok.endswith(("'s", "\u2019s")):
            tok = tok[:-2]
        out.append(tok)
    return out


_SS_POS = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}   # sense-key synset types (5: satellite)


def tagged_senses(wn) -> dict[tuple[str, int], list[tuple[str, int]]]:
    """(pos, synset offset) -> [(lemma name lowercased, SemCor tag count)] of the senses with a
    count > 0, read once: the counts of ``cntlist.rev`` (``key sense_number tag_cnt``, what
    ``Lemma.count()`` looks up by the sense key), placed by ``index.sense`` (``key offset ...``).
    A key only cntlist.rev spells (a satellite whose head carries a syntactic marker, e.g.
    ``afraid(p)``) gets no count, as in NLTK. Cached per WordNet reader."""
    got = getattr(wn, "_webtag_tagged_senses", None)
    if got is not None:
        return got
    counts = {key: int(cnt) for key, _num, cnt in (line.split() for line in _lines(wn, "cntlist.rev"))
              if cnt != "0"}
    out: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for line in _lines(wn, "index.sense"):
        key, _, tail = line.partition(" ")   # the lines are "key offset number count"
        cnt = counts.get(key)
        if cnt:
            off = tail.split(maxsplit=1)[0]
            name, rest = key.split("%", 1)
            out.setdefault((_SS_POS[rest[0]], int(off)), []).append((name, cnt))
    wn._webtag_tagged_senses = out
    return out


class _TokenFilter:
    """Shared checks: no digits, no stopwords, length bounds, no leftover apostrophes."""

    context_free = False   # True: keywords_of(tokens) gives each token's keyword on its own

    def __init__(self, cfg: KeywordConfig):
        self.min_len, self.max_len = cfg.min_length, cfg.max_length
        self.stop = stopwords()

    def ok(self, low: str) -> bool:
        # isalpha(): no digits (no character is both) and no apostrophes, checked in C
        return (self.min_len <= len(low) <= self.max_len and low not in self.stop
                and (low.isalpha() or not any(c.isdigit() or c in "'\u2019" for c in low)))


class WordNetLexiconFilter(_TokenFilter):
    """Context-free noun/adjective filter from WordNet's lexicon and sense counts."""

    name = TAGGER_WORDNET
    context_free = True   # a token's keyword does not depend on its neighbours

    def __init__(self, cfg: KeywordConfig, wn):
        super().__init__(cfg)
        self.wn = wn
        self.cache: dict[str, str | None] = {}   # lowercased token -> keyword (None: none)
        self.raw: dict[str, str] = {}   # token as written -> keyword ("": none)
        self.tagged = tagged_senses(wn)
        self.morphy = morphy_of(wn)

    def _decide(self, low: str) -> str | None:
        if not self.ok(low):
            return None
        morphy = self.morphy
        if morphy.no_noun_or_adjective(low):   # most new web tokens: no need for the rules
            return None
        counts, lemma = {}, {}
        index, tagged = self.wn._lemma_pos_offset_map, self.tagged
        for pos in ("n", "a", "v", "r"):
            if pos == "v" and not counts:   # no noun and no adjective reading: None whatever v, r are
                return None
            forms = morphy.forms(low, pos)
            if not forms:
                continue
            lemma[pos] = min(forms, key=len)
            # what sum(lem.count() for syn in wn.synsets(low, pos) for lem in syn.lemmas() if
            # lem.name().lower() in forms) gives, from the in-memory sense counts: NLTK reads each
            # synset and each count from the data files on disk (~0.8 ms per new token)
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
        return best if self.ok(best) else None

    def decide_nltk(self, low: str) -> str | None:
        """The definition of ``_decide`` in NLTK's own calls (every synset and count read from
        the files): the reference the tests and the benchmark's plain baseline use."""
        if not self.ok(low):
            return None
        counts, lemma = {}, {}
        for pos in ("n", "a", "v", "r"):
            forms = self.wn._morphy(low, pos)
            if not forms:
                continue
            lemma[pos] = min(forms, key=len)
            counts[pos] = 1 + sum(lem.count() for syn in self.wn.synsets(low, pos)
                                  for lem in syn.lemmas() if lem.name().lower() in forms)
        noun, adj = counts.get("n", 0), counts.get("a", 0)
        if max(noun, adj) == 0 or max(noun, adj) < max(counts.get("v", 0), counts.get("r", 0)):
            return None
        best = lemma["n"] if noun >= adj else lemma["a"]
        return best if self.ok(best) else None

    def keywords(self, tokens: list[str]) -> list[str]:
        # a second cache by the token as written (keyword, "" for none) spares a lower() per
        # token: ~0.55 s -> ~0.37 s for the 1.65M tokens of the 20k-record realistic release;
        # the lookups and the filter run in C (map, filter): a Python loop per token was 16% of
        # the count step's CPU
        return list(filter(None, self.keywords_of(tokens)))

    def keywords_of(self, tokens: list[str]) -> list[str]:
        """The keyword of each token ("" for none), in one list."""
        kws = list(map(self.raw.get, tokens))
        if None in kws:   # tokens not seen as written yet
            for i, kw in enumerate(kws):
                if kw is None:
                    kws[i] = self._learn(tokens[i])
        return kws

    def _learn(self, tok: str) -> str:
        """The keyword of a token not seen as written yet ("" for none), cached."""
        kw = self.raw.get(tok)
        if kw is None:
            low = tok.lower()
            kw = self.cache.get(low, _NEW)
            if kw is _NEW:
                kw = self.cache[low] = self._decide(low)
            kw = self.raw[tok] = kw or ""
        return kw


_NEW = object()


class NltkTaggerFilter(_TokenFilter):
    """NLTK's averaged perceptron tagger; keeps NN* and JJ* tokens, lemmatised with WordNet."""

    name = TAGGER_NLTK

    def __init__(self, cfg: KeywordConfig, wn, tagger):
        super().__init__(cfg)
        self.wn = wn
        self.tagger = tagger
        self.lemma_cache: dict[tuple[str, str], str] = {}

    def _lemma(self, low: str, pos: str) -> str:
        key = (low, pos)
        lem = self.lemma_cache.get(key)
        if lem is None:
            forms = morphy_of(self.wn).forms(low, pos)
            lem = self.lemma_cache[key] = min(forms, key=len) if forms else low
        return lem

    def keywords(self, tokens: list[str]) -> list[str]:
        if not tokens:
            return []
        out = []
        for tok, tag in self.tagger.tag(tokens):
            if tag.startswith("NN"):
                pos = "n"
            elif tag.startswith("JJ"):
                pos = "a"
            else:
                continue
            low = tok.lower()
            if self.ok(low):
                lem = self._lemma(low, pos)
                if self.ok(lem):
                    out.append(lem)
        return out


def nltk_tagger_available() -> bool:
    import nltk
    try:
        nltk.data.find(NLTK_TAGGER_RESOURCE)
        return True
    except LookupError:
        return False


def make_pos_filter(cfg: KeywordConfig, wn):
    """The part-of-speech filter the config asks for (``auto``: NLTK's tagger when installed)."""
    if cfg.tagger in ("auto", "nltk"):
        if nltk_tagger_available():
            from nltk.tag.perceptron import PerceptronTagger
            return NltkTaggerFilter(cfg, wn, PerceptronTagger(load=True, lang="eng"))
        if cfg.tagger == "nltk":
            raise RuntimeError(
                "keywords.tagger=nltk but NLTK's tagger model is not installed "
                f"({NLTK_TAGGER_RESOURCE} on NLTK's search path). Install it with "
                "python -c \"import nltk; nltk.download('averaged_perceptron_tagger_eng')\" "
                "or use keywords.tagger=auto (falls back to the WordNet lexicon filter)")
        log.info("NLTK's tagger model is not installed: using the WordNet lexicon filter")
    return WordNetLexiconFilter(cfg, wn)


class KeywordExtractor:
    """title, description, tags -> keyword occurrences (lemmas), in text order."""

    def __init__(self, cfg: KeywordConfig, wn, pos_filter=None):
        self.cfg = cfg
        self.pos = pos_filter or make_pos_filter(cfg, wn)
        self.fields = tuple(cfg.fields)
        for f in self.fields:
            if f not in ("title", "description", "tags"):
                raise ValueError(f"keywords.fields: unknown field {f!r} (title, description, tags)")

    @property
    def tagger_name(self) -> str:
        return self.pos.name

    def text_keywords(self, text: str) -> list[str]:
        if not text:
            return []
        return self.pos.keywords(tokenize(clean_text(text, self.cfg.max_chars)))

    @property
    def context_free(self) -> bool:
        """Whether the keywords of :meth:`tokens` are ``self.pos.keywords_of`` of each token."""
        return self.pos.context_free

    def tokens(self, title: str = "", description: str = "", tags=()) -> list[str]:
        """The tokens of the fields, in the order :meth:`extract` reads them."""
        out: list[str] = []
        for name, text in (("title", title), ("description", description),
                           ("tags", " , ".join(tags) if tags else "")):
            if text and name in self.fields:
                out += tokenize(clean_text(text, self.cfg.max_chars))
        return out

    def extract(self, title: str = "", description: str = "", tags=()) -> list[str]:
        out: list[str] = []
        if "title" in self.fields:
            out += self.text_keywords(title)
        if "description" in self.fields:
            out += self.text_keywords(description)
        if "tags" in self.fields and tags:
            out += self.text_keywords(" , ".join(tags))
        return out


def unique(seq: list[str]) -> list[str]:
    """Distinct items in order of first appearance."""
    return list(dict.fromkeys(seq))
