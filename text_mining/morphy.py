"""WordNet's morphology (NLTK's ``WordNetCorpusReader._morphy``) over the reader's in-memory maps,
with a cheap exact test for tokens it can give nothing for.

Written by hand for speed: on realistic web text (a long tail of misspellings, foreign words and
brands) most distinct tokens are new to the per-token cache of the WordNet lexicon filter, and
each used to cost four calls of NLTK's ``_morphy`` (closures, list comprehensions, a defaultdict
looked up twice per candidate). For the 181k distinct tokens of a 20k-record realistic release
(bench/text_mining.py) the decisions took 1.85 s of CPU and take 0.6 s with this module, the
quick test (half of the tokens) and the verb/adverb forms looked up only for a token with a noun
or adjective form. ``Morphy.forms`` returns exactly what
``wn._morphy(form, pos)`` returns (same list, same order); tests compare the two on every WordNet
lemma, its inflections, every exception form and thousands of made-up tokens.
"""
from __future__ import annotations

# NLTK's WordNetCorpusReader.MORPHOLOGICAL_SUBSTITUTIONS for n, v, a, r (copied so that the rules
# are plain tuples; Morphy checks at build time that NLTK's are still these).
SUBSTITUTIONS = {
    "n": (("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"),
          ("shes", "sh"), ("men", "man"), ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"),
          ("ing", "")),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}


class Morphy:
    """``forms(form, pos)`` == ``wn._morphy(form, pos)`` for pos in n, v, a, r (exceptions checked)."""

    def __init__(self, wn):
        for pos, rules in SUBSTITUTIONS.items():
            if tuple(map(tuple, wn.MORPHOLOGICAL_SUBSTITUTIONS[pos])) != rules:
                raise RuntimeError(f"NLTK's morphological rules for {pos!r} changed: "
                                   "text_mining/morphy.py must follow them")
        self.index = wn._lemma_pos_offset_map   # lemma -> pos -> synset offsets
        # what NLTK's filter_forms tests: form in the index and pos in its entry
        self.lemmas = {pos: set() for pos in SUBSTITUTIONS}
        for lemma, by_pos in self.index.items():
            for pos in by_pos:
                if pos in self.lemmas:
                    self.lemmas[pos].add(lemma)
        self.rules = {pos: {} for pos in SUBSTITUTIONS}   # pos -> last letter -> rules (in order)
        for pos, rules in SUBSTITUTIONS.items():
            for old, new in rules:
                self.rules[pos].setdefault(old[-1], []).append((old, new))
        self.exceptions = {pos: wn._exception_map[pos] for pos in SUBSTITUTIONS}
        # suffixes after which a noun or adjective rule applies: a token that ends with none of
        # them, is no lemma and no exception form has no noun and no adjective reading
        self.na_suffixes = tuple(sorted({old for pos in "na" for old, _ in SUBSTITUTIONS[pos]}))
        self.na_exceptions = self.exceptions["n"].keys() | self.exceptions["a"].keys()

    def no_noun_or_adjective(self, form: str) -> bool:
        """True only when ``forms(form, 'n')`` and ``forms(form, 'a')`` are both empty (a quick
        test; False says nothing)."""
        return (form not in self.index and form not in self.na_exceptions
                and not form.endswith(self.na_suffixes))

    def forms(self, form: str, pos: str) -> list[str]:
        exc = self.exceptions[pos].get(form)
        if exc is not None:
            candidates = [form, *exc]
        else:   # the rules whose suffix ends like the form, in NLTK's order
            candidates = [form]
            for old, new in self.rules[pos].get(form[-1:], ()):
                if form.endswith(old):
                    candidates.append(form[:-len(old)] + new)
        lemmas = self.lemmas[pos]
        if len(candidates) == 1:
            return candidates if form in lemmas else []
        out: list[str] = []
        for cand in candidates:
            if cand in lemmas and cand not in out:
                out.append(cand)
        return out


def morphy_of(wn) -> Morphy:
    """The WordNet reader's one :class:`Morphy` (built once per reader, ~0.2 s), for every caller:
    the lexicon filter, NLTK's tagger's lemmas, the similarity tables, the query terms."""
    got = getattr(wn, "_webtag_morphy", None)
    if got is None:
        got = wn._webtag_morphy = Morphy(wn)
    return got
