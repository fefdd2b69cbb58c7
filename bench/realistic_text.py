"""Realistic web text for the text-mining benchmark: a long-tailed (Zipf) word model.

The example generator's text repeats (a few thousand distinct keywords however many records), so
per-token caches hit almost always. Real web text does not: its distinct-token count keeps growing
with the corpus (Heaps' law), with misspellings, other languages, brand names, numbers, URLs and
hashtags in the tail. :func:`realistic_release` writes a metadata-only release with the example
generator (the class signal, the record layout, the info lists) and then extends each record's
text with words drawn from :class:`WordModel`:

- the word types: every WordNet lemma, inflected (-s, -es, -ed, -ing, -ly), misspelt (a dropped,
  doubled, swapped or replaced letter), words of other languages (syllables in Latin with
  accents, Cyrillic, Greek, and CJK characters), brand and model names, numbers, URLs and
  hashtags (two lemmas run together, camel-cased);
- their frequencies: Zipf, p(rank r) proportional to 1 / (r + 2.7) ** exponent over the shuffled
  types, so a few words are everywhere and most are rare;
- record lengths: Google records short (a title of 3-12 words, a snippet of 5-30), Flickr records
  long (a title of 1-8 words, a description of tens to hundreds of words, 3-40 tags).

Everything is drawn from one seed: the same arguments give the same release.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

LATIN = ["ka", "lo", "mi", "ne", "ra", "to", "vu", "ze", "gli", "schn", "ço", "ñe", "ü", "ä", "ø",
         "é", "ão", "ij", "que", "str", "wa", "jo", "ch", "tz"]
CYRILLIC = ["ка", "ло", "ми", "не", "ра", "то", "ву", "зе", "щи", "жа", "ый", "ой"]
GREEK = ["κα", "λο", "μι", "νε", "ρα", "το", "φω", "ψυ"]
CJK = [chr(c) for c in range(0x4E00, 0x4E00 + 600)] + [chr(c) for c in range(0x30A2, 0x30F3)]
TLDS = ["com", "org", "net", "de", "fr", "co.uk", "ru", "jp", "info"]


def _misspell(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word + word[-1]
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1:]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    if kind == 2:
        return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]
    return word[:i] + rng.choice("aeiourstnl") + word[i + 1:]


def _inflect(word: str, rng: random.Random) -> str:
    suffix = rng.choice(["s", "es", "ed", "ing", "ly", "er"])
    return (word[:-1] if word.endswith("e") and suffix[0] in "ei" else word) + suffix


def _foreign(rng: random.Random) -> str:
    script = rng.random()
    if script < 0.15:
        return "".join(rng.choice(CJK) for _ in range(rng.randint(1, 4)))
    table = LATIN if script < 0.6 else CYRILLIC if script < 0.9 else GREEK
    return "".join(rng.choice(table) for _ in range(rng.randint(2, 5)))


def _brand(rng: random.Random) -> str:
    name = "".join(rng.choice(LATIN[:12]) for _ in range(rng.randint(2, 3))).capitalize()
    if rng.random() < 0.5:
        name += f" {rng.choice('ABCDEFGXZ')}{rng.randint(1, 9999)}"
    return name


def word_types(lemmas: list[str], n_types: int, seed: int) -> list[str]:
    """``n_types`` distinct word types in Zipf rank order (rank 0 the most frequent)."""
    rng = random.Random(seed)
    base = [w.replace("_", " ") for w in lemmas]
    out: set[str] = set()
    makers = [
        (0.30, lambda: rng.choice(base)),
        (0.15, lambda: _inflect(rng.choice(base), rng)),
        (0.15, lambda: _misspell(rng.choice(base), rng)),
        (0.15, lambda: _foreign(rng)),
        (0.08, lambda: _brand(rng)),
        (0.05, lambda: str(rng.randint(0, 99999))),
        (0.06, lambda: "#" + "".join(rng.choice(base).replace(" ", "").capitalize() for _ in range(2))),
        (0.06, lambda: f"http://{rng.choice(base).replace(' ', '')}.{rng.choice(TLDS)}/{rng.randint(1, 9999)}"),
    ]
    cum = np.cumsum([p for p, _ in makers])
    tries = 0
    while len(out) < n_types and tries < 20 * n_types:
        tries += 1
        out.add(makers[int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))][1]())
    types = sorted(out)
    rng.shuffle(types)
    return types


class WordModel:
    """Zipf-distributed draws over a fixed list of word types."""

    def __init__(self, types: list[str], exponent: float = 1.05, seed: int = 0):
        self.types = types
        p = 1.0 / (np.arange(len(types)) + 2.7) ** exponent
        self.cdf = np.cumsum(p / p.sum())
        self.rng = np.random.default_rng(seed)

    def words(self, n: int) -> list[str]:
        idx = np.searchsorted(self.cdf, self.rng.random(n), side="right")
        types = self.types
        return [types[min(i, len(types) - 1)] for i in idx]

    def length(self, lo: int, hi: int, mean: float) -> int:
        """A log-normal length around ``mean``, clipped to [lo, hi]."""
        return int(np.clip(round(self.rng.lognormal(np.log(mean), 0.7)), lo, hi))


def _join(parts: list[str]) -> str:
    return " ".join(p for p in parts if p)


def extend_record(rec: dict, source: str, model: WordModel) -> dict:
    """The record with realistic text added to title, description and (Flickr) tags."""
    title = rec.get("title") or ""
    desc = rec.get("description") or ""
    if source == "google":
        rec["title"] = _join([title, " ".join(model.words(model.length(3, 12, 6)))])
        rec["description"] = _join([desc, " ".join(model.words(model.length(5, 30, 14)))])
    else:
        rec["title"] = _join([title, " ".join(model.words(model.length(1, 8, 3)))])
        rec["description"] = _join([desc, " ".join(model.words(model.length(10, 400, 50)))])
        tags = list(rec.get("tags") or [])
        rec["tags"] = tags + [w.lstrip("#").lower() for w in model.words(model.length(3, 40, 12))]
    return rec


def rewrite_metadata(meta_root: Path, model: WordModel) -> int:
    """Extend every record of every metadata JSON file under ``meta_root``; returns the records."""
    n = 0
    for source in ("google", "flickr"):
        for path in sorted((meta_root / source).glob("*.json")):
            records = json.loads(path.read_text(encoding="utf-8"))
            records = [extend_record(r, source, model) for r in records]
            path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
            n += len(records)
    return n


def wordnet_lemmas(nltk_data: str | None = None) -> list[str]:
    from text_mining.wordnet import load_wordnet

    return sorted(load_wordnet(nltk_data).all_lemma_names())


def realistic_release(root: Path, classes: int, per_class: int, seed: int = 0, n_types: int = 1_000_000,
                      exponent: float = 1.05, nltk_data: str | None = None) -> int:
    """A metadata-only release under ``root`` with realistic text; returns the records rewritten."""
    from webvision_example import make_example

    make_example(root, classes=classes, images_per_class=per_class, seed=seed, images=False)
    meta_root = root / "meta" if (root / "meta").is_dir() else root
    model = WordModel(word_types(wordnet_lemmas(nltk_data), n_types, seed), exponent, seed)
    return rewrite_metadata(meta_root, model)
