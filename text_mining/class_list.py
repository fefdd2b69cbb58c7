"""The classes of web data (text_mining/webdata.py) and the class a caption names.

- :func:`read_class_list`: the user's class list, a file of WordNet noun ids (one a line, as
  WebVision's ``info/synsets.txt``, names optional) or ``imagenet1k``: the 1000 ImageNet-1k wnids
  in ILSVRC order, read from the ``imagenet_synsets.txt`` that timm ships as package data. That
  text file is found through the import system's spec of ``timm`` without importing timm (whose
  package imports torch; text mining never does). Every wnid is checked against WordNet 3.0;
  names default to the synset's lemma names.
- :class:`NameMatcher`: the class whose name occurs in a text (lower-cased) on word boundaries:
  the longest such name, the lowest class id on ties. Names are indexed by their first word, so
  a text costs one dictionary lookup per word instead of one regular expression per class name.
"""
from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

from .release_files import ClassInfo, ReleaseError, read_classes

IMAGENET1K = "imagenet1k"
TIMM_SYNSETS = ("data", "_info", "imagenet_synsets.txt")   # below timm's package folder
_WNID = re.compile(r"n\d{8}")
_WORD = re.compile(r"\w")
_RUN = re.compile(r"\w+")


def imagenet1k_file() -> Path:
    """timm's list of the ImageNet-1k wnids (a ReleaseError naming the package when not installed)."""
    try:
        spec = importlib.util.find_spec("timm")   # a top-level spec: timm itself is not imported
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder).joinpath(*TIMM_SYNSETS)
        if path.is_file():
            return path
    raise ReleaseError("--classes imagenet1k: the ImageNet-1k class list comes from the timm package "
                       "(timm/data/_info/imagenet_synsets.txt), which is not installed here: "
                       "pip install timm (or install webtag with its training dependencies), or give a "
                       "file of the 1000 wnids")


def read_class_list(path: str, nltk_data: str | None = None) -> list[ClassInfo]:
    """The user's classes: wnids checked against WordNet 3.0, names from WordNet where not given."""
    if path == IMAGENET1K:
        p = imagenet1k_file()
        wnids = p.read_text(encoding="utf-8").split()
        if len(wnids) != 1000 or not all(_WNID.fullmatch(w) for w in wnids):
            raise ReleaseError(f"--classes imagenet1k: {p} does not hold 1000 wnids (n########), "
                               f"but {len(wnids)} entries: a timm version webtag does not know")
    else:
        p = Path(path)
        if not p.is_file():
            raise ReleaseError(f"classes file {p} does not exist")
    from .wordnet import load_wordnet, synset_from_wnid
    wn = load_wordnet(nltk_data)
    out = []
    for lineno, c in _numbered(read_classes(p), p):
        try:
            with warnings.catch_warnings():   # nltk warns and returns None for an unknown offset
                warnings.simplefilter("ignore")
                syn = synset_from_wnid(wn, c.wnid)
        except Exception:   # or raises WordNetError / ValueError
            syn = None
        if syn is None:
            raise ReleaseError(f"{p}:{lineno}: {c.wnid} is not a WordNet 3.0 noun synset")
        words = c.words or tuple(name.replace("_", " ") for name in syn.lemma_names())
        out.append(ClassInfo(c.class_id, c.wnid, words))
    return out


def _numbered(classes: list[ClassInfo], path: Path):
    lines = [i + 1 for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines())
             if line.strip()]
    return zip(lines, classes)


class NameMatcher:
    """``match(text)``: the id of the class whose (lower-cased) name occurs in ``text`` as the
    regular expression ``\\b NAME \\b`` would find it; the longest name, then the lowest id; -1
    for none.

    A name that begins and ends with a word character can only match where a run of word
    characters of the text starts, and that run is then exactly the name's first run (the name's
    own run ends at a non-word character or at its end, where ``\\b`` needs the text's to end
    too). So names are indexed by their first run; a candidate matches when the text continues
    with the whole name and no word character follows it. The rare names that begin or end with
    another character keep their regular expression."""

    def __init__(self, classes: list[ClassInfo]):
        names = sorted(((w.lower(), c.class_id) for c in classes for w in c.words),
                       key=lambda t: (-len(t[0]), t[1]))
        self.by_first: dict[str, list[tuple[str, int]]] = {}
        self.patterns: list[tuple[re.Pattern, str, int]] = []
        for name, cid in names:
            if not name:
                continue
            if _WORD.match(name) and _WORD.match(name[-1]):
                self.by_first.setdefault(_RUN.match(name).group(), []).append((name, cid))
            else:
                self.patterns.append((re.compile(r"\b" + re.escape(name) + r"\b"), name, cid))

    def match(self, text: str) -> int:
        best: tuple[int, int] | None = None   # (-len(name), class id): smaller is better
        for run in _RUN.finditer(text):
            for name, cid in self.by_first.get(run.group(), ()):
                if best is not None and (-len(name), cid) >= best:
                    break   # the candidates are in the order of the rule: none after is better
                end = run.start() + len(name)
                if text.startswith(name, run.start()) and not _WORD.match(text, end):
                    best = (-len(name), cid)
                    break
        for pattern, name, cid in self.patterns:
            if (best is None or (-len(name), cid) < best) and pattern.search(text):
                best = (-len(name), cid)
        return -1 if best is None else best[1]
