"""The messy web text of the metadata records: Google and Flickr records of one image each.

About 70% of the records talk about their own class, 15% about another class and the rest about
nothing in particular (label noise). The share about another class differs by class (planted
noise): ``noise_rates`` spreads it linearly from ``(1 - spread)`` to ``(1 + spread)`` times
``OTHER_CLASS_TEXT`` over the classes (mean unchanged), and every record remembers its subject
(``TextMaker.subjects``), so tests can compare an estimate of each class's noise with the truth. Titles and descriptions fill templates (``words/
templates.json``) whose fields (``{name}``, ``{Adj}``, ``{url}``, ...) are drawn by ``FIELDS``
when a template first asks for them, so one record says the same name, site and user throughout.
The text has HTML entities, raw tags, URLs, e-mail addresses, hashtags, camera boilerplate, other
languages and emoji; records lose keys, get nulls or empty values now and then.

Every draw comes from the one ``random.Random`` of the release, in a fixed order: the same seed
gives the same text.
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Callable

from webvision_example import words
from webvision_example.classes import ExampleClass

OWN_TEXT = 0.70          # share of images whose text is about their own class (on average)
OTHER_CLASS_TEXT = 0.15  # ... about another class (the mean over classes); the rest is generic
NOISE_SPREAD = 0.9       # per-class share about another class: OTHER_CLASS_TEXT * (1 -/+ spread)
GENERIC = -1             # the subject of a text about nothing in particular


@dataclass
class Vocab:
    """The words a text about one subject draws from."""
    names: list[str]
    hypers: list[str]
    adjs: list[str]
    ctxs: list[str]
    cfor: list[str]


def class_vocab(c: ExampleClass) -> Vocab:
    root = words.roots()[c.root]
    names = [c.words[0]] * 3 + c.words + [w.lower() for w in c.words]
    group = words.groups()[root.group]
    return Vocab(names, root.kind + [c.hypernym], group.adjectives, group.contexts, root.foreign)


@functools.lru_cache(maxsize=None)
def generic_vocab() -> Vocab:
    """Texts about nothing in particular: holidays, family, selfies."""
    groups = words.groups().values()
    return Vocab(words.web("generic"), words.web("generic_hypernyms"),
                 sorted({w for g in groups for w in g.adjectives}),
                 sorted({w for g in groups for w in g.contexts}), words.languages("generic_foreign"))


def slug(text: str, sep: str) -> str:
    return sep.join("".join(ch for ch in w.lower() if ch.isalnum()) for w in text.split()) or "img"


def _camel(text: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in text.split())


class Fields(dict):
    """The template fields of one record, each drawn (by ``FIELDS``) when first asked for."""

    def __init__(self, rng: random.Random, vocab: Vocab):
        super().__init__()
        self.rng = rng
        self.vocab = vocab

    def __missing__(self, key: str) -> str:
        value = FIELDS[key](self)
        self[key] = value
        return value


# --------------------------------------------------------------------------------------------
# The fields: key -> how it is drawn
# --------------------------------------------------------------------------------------------

Draw = Callable[[Fields], str]


def _from_vocab(attr: str, change: Callable[[str], str] = str) -> Draw:
    """A word of the subject's vocabulary."""
    return lambda f: change(f.rng.choice(getattr(f.vocab, attr)))


def _from_table(table: Callable[[str], list[str]], key: str) -> Draw:
    """A word of a word table (words.web, words.languages)."""
    return lambda f: f.rng.choice(table(key))


def _from_field(key: str, change: Callable[[str], str]) -> Draw:
    """Another field of the same record, changed."""
    return lambda f: change(f[key])


def _number(low: int, high: int, form: str = "d") -> Draw:
    return lambda f: format(f.rng.randint(low, high), form)


def _hashtag(key: str, change: Callable[[str], str]) -> Draw:
    return lambda f: "#" + change(f[key])


def _date(f: Fields) -> str:
    r = f.rng
    return f"{r.randint(2004, 2016)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"


def _email(f: Fields) -> str:
    r = f.rng
    domain = r.choice(words.web("email_domains") + [f"{slug(f['name'], '')}.com"])
    return f"{f['user']}{r.choice(['', '', str(r.randint(1, 99))])}@{domain}"


def _site(f: Fields) -> str:
    r = f.rng
    if r.random() < 0.7:
        return r.choice(words.web("sites"))
    stem = slug(f["name"], r.choice(["", "-"]))
    suffix = r.choice(words.web("site_suffixes"))
    return f"www.{stem}{suffix}{r.choice(words.web('site_tlds'))}"


def _url(f: Fields) -> str:
    r = f.rng
    name = slug(f["name"], "-")
    form = r.randrange(4)
    if form == 0:
        return f"http://{f['site']}/{name}.html"
    if form == 1:
        return f"https://{f['site']}/photos/{f['user']}/{r.randint(10**9, 10**11)}/"
    if form == 2:
        return f"www.{name.replace('-', '')}.com"
    return f"http://{f['site']}/index.php?id={r.randint(1, 99999)}&amp;cat={name}"


def _squashed(text: str) -> str:
    return text.replace(" ", "").lower()


FIELDS: dict[str, Draw] = {
    "name": _from_vocab("names"),
    "Name": _from_field("name", str.title),
    "NAME": _from_field("name", str.upper),
    "hyper": _from_vocab("hypers"),
    "adj": _from_vocab("adjs"),
    "Adj": _from_vocab("adjs", str.capitalize),
    "ctx": _from_vocab("ctxs"),
    "cfor": _from_vocab("cfor"),
    "boiler": _from_table(words.web, "boilerplate"),
    "boiler2": _from_table(words.web, "boilerplate"),
    "foreign": _from_table(words.languages, "foreign"),
    "foreign2": _from_table(words.languages, "foreign"),
    "emoji": _from_table(words.web, "emoji"),
    "emoji2": _from_table(words.web, "emoji"),
    "camera": _from_table(words.web, "cameras"),
    "user": _from_table(words.web, "users"),
    "year": _number(2004, 2016),
    "num": _number(1, 999),
    "num2": _number(1, 999),
    "n4": _number(0, 9999, "04d"),
    "n5": _number(0, 99999, "05d"),
    "n7": _number(0, 9999999, "07d"),
    "date": _date,
    "email": _email,
    "site": _site,
    "url": _url,
    "tag": _hashtag("name", _squashed),
    "Tag": _hashtag("name", _camel),
    "htag": _hashtag("hyper", _squashed),
}

# The kinds of Flickr tags, drawn uniformly.
TAG_KINDS: tuple[Draw, ...] = (
    lambda f: f["name"],                                   # multi-word tag
    lambda f: f["name"].replace(" ", ""),                  # concatenated
    lambda f: f.rng.choice(f["name"].split()),
    lambda f: f.rng.choice(f.vocab.hypers),
    lambda f: f.rng.choice(f.vocab.ctxs + f.vocab.adjs),
    lambda f: f.rng.choice(words.web("flickr_tags")),
    lambda f: f.rng.choice(f.vocab.cfor + words.languages("foreign")),
    lambda f: f.rng.choice([f["year"], f"{f['camera']}".replace(" ", ""),
                            f.rng.choice(words.web("boilerplate"))]),
)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def noise_rates(n_classes: int, spread: float = NOISE_SPREAD) -> list[float]:
    """Each class's share of texts about another class: linear from ``(1 - spread)`` to
    ``(1 + spread)`` times ``OTHER_CLASS_TEXT`` over the class indices (mean ``OTHER_CLASS_TEXT``);
    ``spread=0`` gives every class the same share."""
    if not 0.0 <= spread <= 1.0:
        raise ValueError(f"noise spread must be within [0, 1], not {spread}")
    if n_classes < 2:
        return [0.0] * n_classes   # no other class to talk about
    return [OTHER_CLASS_TEXT * (1 - spread + 2 * spread * i / (n_classes - 1)) for i in range(n_classes)]


class TextMaker:
    """Metadata records about the classes of one release, drawn from ``rng``.

    ``subjects`` grows by one entry per record made: the class its text is about, or ``GENERIC``.
    """

    def __init__(self, rng: random.Random, classes: list[ExampleClass], spread: float = NOISE_SPREAD):
        self.rng = rng
        self.vocabs = [class_vocab(c) for c in classes]
        self.other_rates = noise_rates(len(classes), spread)
        self.subjects: list[int] = []

    def subject(self, class_index: int) -> Vocab:
        r = self.rng.random()
        generic = 1.0 - OWN_TEXT - OTHER_CLASS_TEXT   # the same share for every class
        if r < generic:
            self.subjects.append(GENERIC)
            return generic_vocab()
        if r < generic + self.other_rates[class_index]:
            other = self.rng.randrange(len(self.vocabs) - 1)   # any class but its own
            other += other >= class_index
            self.subjects.append(other)
            return self.vocabs[other]
        self.subjects.append(class_index)
        return self.vocabs[class_index]

    def title(self, f: Fields) -> str:
        text = self.rng.choice(words.templates("titles")).format_map(f)
        return text.upper() if self.rng.random() < 0.04 else text

    def description(self, f: Fields) -> str:
        r = self.rng
        k = r.choice((0, 1, 1, 1, 2, 2, 3, 4))
        parts = [r.choice(words.templates("descriptions")).format_map(f) for _ in range(k)]
        out = ""
        for i, part in enumerate(parts):
            out += (r.choice(words.templates("separators")) if i else "") + part
        return out

    def tags(self, f: Fields) -> list[str]:
        r = self.rng
        n = r.choice((0, 1, 2, 3, 4, 5, 6, 8, 10, 14))
        tags: list[str] = []
        for _ in range(n):
            tag = TAG_KINDS[r.randrange(len(TAG_KINDS))](f).lower()
            if tag not in tags:
                tags.append(tag)
        return tags

    def messy(self, record: dict) -> dict:
        """Drop keys, null them or empty them now and then; rarely empty all the text."""
        r = self.rng
        if r.random() < 0.02:
            for key in ("title", "description"):
                record[key] = ""
            if "tags" in record:
                record["tags"] = []
        for key in list(record):
            if key == "id":
                continue
            x = r.random()
            if x < 0.03:
                del record[key]
            elif x < 0.06:
                record[key] = None
            elif x < 0.08:
                record[key] = [] if key == "tags" else ""
        return record

    def google_record(self, class_index: int, row: int) -> dict:
        r = self.rng
        f = Fields(r, self.subject(class_index))
        site = f["site"]
        name = slug(f["name"], r.choice(["-", "_", ""]))
        ext = r.choice(["jpg", "jpg", "jpg", "JPG", "jpeg", "png"])
        folder = r.choice(["images", f"wp-content/uploads/{f['year']}", "img", "photos"])
        page = r.choice([".html", "/", f".php?p={r.randint(1, 9999)}"])
        record = {
            "id": f"{r.getrandbits(128):032x}",
            "title": self.title(f),
            "description": self.description(f),
            "url": f"http://{site}/{folder}/{name}{r.choice(['', '_', '-'])}{r.randint(1, 999)}.{ext}",
            "page_url": f"http://{site}/{name}{page}",
            "site": site,
            "rank": str(row),
        }
        return self.messy(record)

    def flickr_record(self, class_index: int, photo_id: int) -> dict:
        f = Fields(self.rng, self.subject(class_index))
        record = {
            "id": str(photo_id),
            "title": self.title(f),
            "description": self.description(f),
            "tags": self.tags(f),
        }
        return self.messy(record)
