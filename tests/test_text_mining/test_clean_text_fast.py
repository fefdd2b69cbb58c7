"""clean_text and tokenize with their shortcuts (URL regex only on whitespace-free runs with . @ :,
passes skipped when their character is absent) equal the plain regex pipeline."""
import html
import random

import pytest

from text_mining import keywords
from text_mining.keywords import _CAMEL, _HASHTAG, _HTML_TAG, _TOKEN, _URL, clean_text, tokenize


def clean_reference(text, max_chars=2000):
    text = text[:max_chars]
    for _ in range(3):
        if "&" not in text:
            break
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    text = _HTML_TAG.sub(" ", text)
    text = _URL.sub(" ", text)
    if "#" in text:
        text = _HASHTAG.sub(lambda m: " " + _CAMEL.sub(" ", m.group(1)) + " ", text)
    return text


def tokenize_reference(text):
    out = []
    for tok in _TOKEN.findall(text.replace("_", " ")):
        if tok.endswith(("'s", "\u2019s")):
            tok = tok[:-2]
        out.append(tok)
    return out


TRICKY = [
    "", " ", ".", "@", ":", "://", "a.b", "www.", "www.x", " www.x.com/a?b=c d", "(http://x.org/a)",
    "see https://flic.kr/p/2abc, or HTTP://X.COM.", "mail me@example.org now", "me@x", "@home",
    "a@b.c@d.e", "x.com", "X.COM/path", "foo.html bar.JPG baz.jpeg.", "end.", "e.g. i.e. U.S.A.",
    "file_name.png", "IMG_2345.JPG", "dog.com's", "über.de straße.de", "日本.jp 東京", "ftp://a b",
    "mailto:a@b.org", "12:30 10.5 3.14.15", "a.-b.com", "-x.com-", "www.a\u00a0b.com", "a\u3000b.org",
    "x.org\x1cy.org", "a\tb.net\nc.io\rd", "x.co.uk/a/b c", "#GoldenRetriever", "#sunset #puppyLove",
    "##a#B", "#ÜberCool", "#snake_case_Tag", "#x.com", "#www.a.b", "a#b.com", "&amp;amp;lt;b&gt;",
    "&lt;a href='http://x.org'&gt;link&lt;/a&gt;", "Tom &amp; Jerry", "&#64;x.com &#x3A;//", "<b>x.com</b>",
    "<a href=\"www.q.org\">q</a>.", "<<>>", "dog's dogs' DOG'S it\u2019s o'neill", "rock'n'roll's",
    "l'été n’est", "_a_ __b", "camelCaseWord", "e-mail: x_y@z-w.info;", "http://", "www..com",
    "a..b.com", ".com", "..", "x.", "...www.x.y", "Hello.World.Com", "a.b.c.d.e.f.g.h.i.j.k.com",
]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_inputs(text):
    for t in (text, text + " tail", "head " + text, text.upper(), text * 3):
        assert clean_text(t) == clean_reference(t), t
        assert tokenize(clean_text(t)) == tokenize_reference(clean_reference(t)), t
        assert tokenize(t) == tokenize_reference(t), t


def test_random_strings():
    rng = random.Random(0)
    pieces = ["a", "B", "x", "com", "org", "de", "html", "jpg", "www", "http", "://", "/", ".", "..",
              "@", ":", "-", "+", "_", "#", "&amp;", "&lt;", "&gt;", "<", ">", "'", "\u2019", "'s",
              " ", " ", "  ", "\t", "\n", "\u00a0", "\u3000", "\x1c", "é", "ß", "日", "1", "2014",
              "Golden", "Retriever", "dog", "mail", "e", "i", "?", "=", ",", "(", ")"]
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 25)))
        assert clean_text(text) == clean_reference(text), repr(text)
        assert tokenize(text) == tokenize_reference(text), repr(text)


def test_max_chars_then_fast_paths():
    text = "x " * 10 + "www.example.com/" + "a" * 50
    for n in (0, 5, 20, 23, 30, 100):
        assert clean_text(text, n) == clean_reference(text, n)


def test_url_runs_see_every_whitespace_the_regex_sees():
    # the run pattern splits on what \s is; _URL's \S+ stops at the same characters
    for cp in range(0x3100):
        c = chr(cp)
        text = f"www.a{c}b.com x"
        assert clean_text(text) == clean_reference(text), hex(cp)
    assert keywords._URL_RUN.pattern.startswith("(\\s)")


def test_tokenize_every_character():
    for cp in range(0x30000):
        c = chr(cp)
        for text in (f"a{c}b", f"{c}x{c}", f"x's{c}s"):
            assert tokenize(text) == tokenize_reference(text), hex(cp)
