"""The example's classes and search queries: real WordNet 3.0 noun synsets, drawn by seed.

The pool is every leaf synset under the roots of ``words/roots.json`` (concrete, visual kinds such
as dog.n.01, edible_fruit.n.01, musical_instrument.n.01) whose lemma names are plain ASCII; each
class gets 1 or 2 search queries made of its lemmas.
"""
from __future__ import annotations

import functools
import random
import warnings
from dataclasses import dataclass

from webvision_example import words


@dataclass
class ExampleClass:
    index: int           # 0-based class id
    wnid: str            # "n02099601"
    lemmas: list[str]    # WordNet lemma names, with underscores
    root: int            # index into words.roots()
    hypernym: str        # the nearest hypernym's first lemma, spaces

    @property
    def words(self) -> list[str]:
        return [lemma.replace("_", " ") for lemma in self.lemmas]

    def synset_line(self) -> str:
        return f"{self.wnid} {', '.join(self.words)}"


def load_wn():
    from text_mining.wordnet import load_wordnet

    with warnings.catch_warnings():  # "multilingual functions are not available": not needed
        warnings.simplefilter("ignore", UserWarning)
        return load_wordnet()


@functools.lru_cache(maxsize=2)
def candidate_pool(wn) -> tuple[tuple[object, int], ...]:
    """(synset, root index) for every leaf under the roots, sorted by WordNet offset."""
    seen: dict[object, int] = {}
    for i, root in enumerate(words.roots()):
        for syn in wn.synset(root.synset).closure(lambda s: s.hyponyms()):
            if syn in seen or syn.hyponyms():
                continue
            names = syn.lemma_names()
            if not names or any("," in n or not n.isascii() or not n.isprintable() for n in names):
                continue
            seen[syn] = i
    return tuple(sorted(seen.items(), key=lambda kv: kv[0].offset()))


def choose_classes(wn, n: int, rng: random.Random) -> list[ExampleClass]:
    from text_mining.wordnet import wnid_of

    pool = candidate_pool(wn)
    if n > len(pool):
        raise ValueError(f"at most {len(pool)} classes can be drawn, not {n}")
    picked = sorted(rng.sample(range(len(pool)), n))
    classes = []
    for index, k in enumerate(picked):
        syn, root = pool[k]
        hypers = sorted(syn.hypernyms(), key=lambda h: h.offset())  # NLTK's order is a set's
        hyper = hypers[0].lemma_names()[0].replace("_", " ") if hypers else words.roots()[root].kind[0]
        classes.append(ExampleClass(index, wnid_of(syn), list(syn.lemma_names()), root, hyper))
    return classes


def make_queries(classes: list[ExampleClass], rng: random.Random) -> list[tuple[int, int, str]]:
    """(1-based query id, class index, query with + between words): 1 or 2 per class."""
    queries: list[tuple[int, int, str]] = []
    for c in classes:
        texts = [c.lemmas[0]]
        if len(c.lemmas) > 1 and rng.random() < 0.7:
            texts.append(rng.choice(c.lemmas[1:]))
        elif rng.random() < 0.3:
            kind = words.roots()[c.root].kind[0]
            if kind not in c.lemmas[0].lower().split("_"):
                texts.append(f"{c.lemmas[0]}_{kind}")
        for text in texts:
            queries.append((len(queries) + 1, c.index, "+".join(text.replace("_", " ").split())))
    return queries
