"""WordNet similarity between noun synsets and a fixed set of classes, vectorised over classes.

Per-pair NLTK calls (``wup_similarity`` etc.) cost ~0.1 ms each: 35k keywords x 5000 classes would
take hours. Here each class's ancestors are indexed once: for every ancestor node ``a`` we keep the
classes below it and their hypernym distance to it. A synset then meets all classes at once by
walking its own ~15 ancestors, each an array operation over the classes below that ancestor.

Definitions (noun taxonomy; hypernym and instance-hypernym edges; one root, entity.n.01):
- ``dist(a, b)``: the shortest path through a common ancestor, ``min_c (d(a, c) + d(b, c))`` with
  ``d`` the hypernym distance (NLTK's ``shortest_path_distance``);
- Wu-Palmer ``wup = 2 depth(lcs) / (depth(a) + depth(b))`` (methods.md section 3) with NLTK's
  conventions, so values equal ``wup_similarity``: the LCS is the common ancestor of greatest
  min_depth (ties: first by name), ``depth(lcs) = max_depth(lcs) + 1`` and
  ``depth(a) = dist(a, lcs) + depth(lcs)``; tests check equality with NLTK, except that a synset
  has similarity 1 with itself (NLTK never takes the synset itself as the subsumer, so for
  synsets with two hypernym paths it gives less: dog.n.01 with itself is 0.93);
- path ``= 1 / (dist + 1)`` and Leacock-Chodorow ``= -log((dist + 1) / (2 D))`` with D the maximum
  depth of the noun taxonomy (both exactly NLTK's values); here LCH is divided by ``log(2 D)`` so
  that every measure lies in [0, 1] with 1 for identical synsets.
"""
from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import numpy as np

from .morphy import morphy_of


def _offset(syn) -> int:
    """A noun synset's offset: synsets and plain offsets are both accepted."""
    return syn if isinstance(syn, int) else syn.offset()


class Taxonomy:
    """Memoised hypernym ancestors of noun synsets: offset -> {ancestor offset: distance}.

    Works on synset offsets. A synset's parents (hypernym and instance-hypernym pointers) are read
    from its line of WordNet's ``data.noun``, held in memory, by splitting the pointer fields only:
    NLTK parses the whole line into a Synset and a Synset per pointer (26k vocabulary keywords'
    noun senses: 9.2 s through ``wn.synsets``, 0.3 s from the lemma index here; their ancestors
    1.3 s, 0.6 s here). NLTK's Synsets are still made for names, where ancestors tie on depth."""

    def __init__(self, wn):
        self.wn = wn
        self._anc: dict[int, dict[int, int]] = {}
        self._depth: dict[int, int] = {}
        self._maxd: dict[int, int] = {}
        self._order: dict[int, list[int]] = {}
        self._names: dict[int, str] = {}
        self._parents: dict[int, tuple[int, ...]] = {}
        self._max_depth = None
        root = getattr(wn.root, "path", None)
        path = os.path.join(root, "data.noun") if root else None
        self._data = Path(path).read_bytes() if path and os.path.isfile(path) else None

    @property
    def max_depth(self) -> int:
        """Maximum depth of the noun taxonomy (NLTK's, for LCH; 19 in WordNet 3.0; ~10 s to compute)."""
        if self._max_depth is None:
            if ("n", False) not in self.wn._max_depth:
                self.wn._compute_max_depth("n", False)
            self._max_depth = self.wn._max_depth[("n", False)]
        return self._max_depth

    def noun_senses(self, word: str) -> list[int]:
        """Offsets of ``wn.synsets(word, "n")``, in its order, without making the Synsets."""
        index = self.wn._lemma_pos_offset_map
        return [off for form in morphy_of(self.wn).forms(word.lower(), "n") for off in index[form].get("n", ())]

    def parents(self, off: int) -> tuple[int, ...]:
        """Offsets of the synset's hypernyms then instance hypernyms, in NLTK's order."""
        got = self._parents.get(off)
        if got is None:
            if self._data is not None:
                f = self._data[off: self._data.index(b"\n", off)].split()
                at = 4 + 2 * int(f[3], 16)                  # offset lex_filenum ss_type w_cnt words...
                ptrs = [(f[at + 1 + 4 * j], int(f[at + 2 + 4 * j])) for j in range(int(f[at]))]
                got = tuple(o for sym, o in ptrs if sym == b"@") + tuple(o for sym, o in ptrs if sym == b"@i")
            else:   # WordNet not in a folder on disk: through NLTK's reader
                syn = self.wn.synset_from_pos_and_offset("n", off)
                got = tuple(p.offset() for p in syn.hypernyms() + syn.instance_hypernyms())
            self._parents[off] = got
        return got

    def ancestors(self, syn) -> dict[int, int]:
        off = _offset(syn)
        got = self._anc.get(off)
        if got is not None:
            return got
        out = {off: 0}
        parents = self.parents(off)
        for parent in parents:
            for a, d in self.ancestors(parent).items():
                if d + 1 < out.get(a, 1 << 30):
                    out[a] = d + 1
        self._anc[off] = out
        self._depth[off] = 1 if not parents else 1 + min(self.depth(p) for p in parents)
        return out

    def depth(self, syn) -> int:
        off = _offset(syn)
        if off not in self._depth:
            self.ancestors(off)
        return self._depth[off]

    def depth_of_offset(self, off: int) -> int:
        return self._depth[off]

    def max_depth_of_offset(self, off: int) -> int:
        """NLTK's ``max_depth``: the longest hypernym path to the root."""
        got = self._maxd.get(off)
        if got is None:
            parents = self.parents(off)
            got = self._maxd[off] = 0 if not parents else 1 + max(self.max_depth_of_offset(p) for p in parents)
        return got

    def path_lengths(self, syn) -> dict[int, int]:
        """For each ancestor ``a``: NLTK's ``shortest_path_distance(syn, a)``, the shortest path
        through any common ancestor (it can be shorter than the hypernym distance to ``a``)."""
        anc = self.ancestors(syn)
        out = {}
        for a in anc:
            anc_a = self._anc[a]
            out[a] = min(anc[x] + dx for x, dx in anc_a.items())
        return out

    def lcs_order(self, syn) -> list[int]:
        """Ancestors of ``syn`` by min_depth descending, then synset name (NLTK's LCS choice);
        names are looked up only among ancestors of equal depth."""
        off = _offset(syn)
        got = self._order.get(off)
        if got is None:
            depth = self._depth.__getitem__
            got = []
            for _, same in itertools.groupby(sorted(self.ancestors(off), key=depth, reverse=True), key=depth):
                same = list(same)
                got += same if len(same) == 1 else sorted(same, key=self._name)
            self._order[off] = got
        return got

    def _name(self, off: int) -> str:
        name = self._names.get(off)
        if name is None:
            name = self._names[off] = self.wn.synset_from_pos_and_offset("n", off).name()
        return name


class ClassSimilarity:
    """Similarity of any noun synset to every class synset, as a dense row."""

    def __init__(self, taxonomy: Taxonomy, class_synsets: list, measure: str = "wup"):
        if measure not in ("wup", "path", "lch"):
            raise ValueError(f"unknown WordNet measure {measure!r} (wup, path, lch)")
        self.tax = taxonomy
        self.measure = measure
        self.n = len(class_synsets)
        below: dict[int, tuple[list[int], list[int]]] = {}
        self.class_of: dict[int, np.ndarray] = {}
        for ci, syn in enumerate(class_synsets):
            self.class_of.setdefault(_offset(syn), []).append(ci)
        self.class_of = {k: np.asarray(v) for k, v in self.class_of.items()}
        for ci, syn in enumerate(class_synsets):
            for a, d in taxonomy.path_lengths(syn).items():
                idx, dist = below.setdefault(a, ([], []))
                idx.append(ci)
                dist.append(d)
        self.below = {a: (np.asarray(i, dtype=np.int64), np.asarray(d, dtype=np.float64))
                      for a, (i, d) in below.items()}
        self.lch_scale = math.log(2.0 * taxonomy.max_depth) if measure == "lch" else 1.0

    def row(self, syn) -> np.ndarray:
        anc = self.tax.path_lengths(syn)
        if self.measure == "wup":
            # NLTK's subsumer: the common ancestor of greatest min_depth, ties by name; the walk
            # visits own ancestors in that order, so the first hit per class is its subsumer.
            val = np.zeros(self.n)
            done = np.zeros(self.n, dtype=bool)
            for a in self.tax.lcs_order(syn):
                hit = self.below.get(a)
                if hit is None:
                    continue
                idx, dca = hit
                new = ~done[idx]
                if not new.any():
                    continue
                idx, dca = idx[new], dca[new]
                depth = self.tax.max_depth_of_offset(a) + 1.0
                val[idx] = 2.0 * depth / (anc[a] + dca + 2.0 * depth)
                done[idx] = True
                if done.all():
                    break
            same = self.class_of.get(_offset(syn))
            if same is not None:
                val[same] = 1.0  # NLTK skips the synset itself as subsumer (dog-dog = 0.93)
            return val
        dist = np.full(self.n, np.inf)
        for a, d in anc.items():
            hit = self.below.get(a)
            if hit is not None:
                idx, dca = hit
                dist[idx] = np.minimum(dist[idx], d + dca)
        if self.measure == "path":
            return np.where(np.isinf(dist), 0.0, 1.0 / (dist + 1.0))
        lch = -np.log((dist + 1.0) / (2.0 * self.tax.max_depth)) / self.lch_scale
        return np.where(np.isinf(dist), 0.0, lch)

    def rows(self, synsets: list) -> np.ndarray:
        out = np.zeros((len(synsets), self.n), dtype=np.float32)
        for i, syn in enumerate(synsets):
            out[i] = self.row(syn)
        return out

    def word_row(self, senses: list) -> np.ndarray:
        """A word's similarity to each class: the best over its senses (synsets or offsets; zeros
        without senses)."""
        if not senses:
            return np.zeros(self.n, dtype=np.float32)
        return self.rows(senses).max(axis=0)


def top_k_rows(dense: np.ndarray, k: int, min_score: float = 1e-6) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per row: the k largest entries (> min_score) as (column ids, scores), score-descending,
    ties broken by column id."""
    k = min(k, dense.shape[1])
    ids_out, sc_out = [], []
    if k == 0:
        return [np.zeros(0, np.int32)] * len(dense), [np.zeros(0, np.float32)] * len(dense)
    part = np.argpartition(-dense, k - 1, axis=1)[:, :k]
    for r in range(dense.shape[0]):
        cols = part[r]
        vals = dense[r, cols]
        keep = vals > min_score
        cols, vals = cols[keep], vals[keep]
        order = np.lexsort((cols, -vals))
        ids_out.append(cols[order].astype(np.int32))
        sc_out.append(vals[order].astype(np.float32))
    return ids_out, sc_out
