"""The word tables of the generated text, read from the package's data files ``words/*.json``.

Each file is read once, on first use. Keys that start with ``_`` are notes for the reader.

* ``roots.json``: the roots of the class pool (WordNet synsets) with the words web text uses for
  their kind and the kind in five other languages;
* ``groups.json``: adjectives and context nouns per group of roots;
* ``web.json``: boilerplate, Flickr tags, cameras, emoji, sites, users, mail domains, generic text;
* ``languages.json``: words of other languages;
* ``templates.json``: title and description templates, separators.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import NamedTuple

WORDS_DIR = Path(__file__).resolve().parent / "words"


class Root(NamedTuple):
    synset: str          # "dog.n.01": every leaf below it may become a class
    group: str           # key of groups.json
    kind: list[str]      # words web text uses for such things ("dog", "puppy", ...)
    foreign: list[str]   # the kind in de, fr, es, ja, ru


class Group(NamedTuple):
    adjectives: list[str]
    contexts: list[str]


@functools.lru_cache(maxsize=None)
def _load(name: str) -> dict:
    with open(WORDS_DIR / f"{name}.json", encoding="utf-8") as fh:
        return {k: v for k, v in json.load(fh).items() if not k.startswith("_")}


@functools.lru_cache(maxsize=None)
def roots() -> tuple[Root, ...]:
    """The roots of the class pool, the more specific first."""
    return tuple(Root(**r) for r in _load("roots")["roots"])


@functools.lru_cache(maxsize=None)
def groups() -> dict[str, Group]:
    return {name: Group(**g) for name, g in _load("groups").items()}


def web(key: str) -> list[str]:
    """A list of web.json: ``boilerplate``, ``flickr_tags``, ``cameras``, ``emoji``, ``sites``,
    ``users``, ``email_domains``, ``site_suffixes``, ``site_tlds``, ``generic``,
    ``generic_hypernyms``."""
    return _load("web")[key]


def languages(key: str) -> list[str]:
    """A list of languages.json: ``foreign``, ``generic_foreign``."""
    return _load("languages")[key]


def templates(key: str) -> list[str]:
    """A list of templates.json: ``titles``, ``descriptions``, ``separators``."""
    return _load("templates")[key]
