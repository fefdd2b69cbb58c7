"""The vectorised WordNet similarities equal NLTK's per-pair values."""
import random

import numpy as np
import pytest

from text_mining.similarity import ClassSimilarity, Taxonomy, top_k_rows


@pytest.mark.parametrize("measure", ["wup", "path", "lch"])
def test_equals_nltk(wn, measure):
    rng = random.Random(7)
    nouns = sorted(wn.all_synsets("n"), key=lambda s: s.offset())
    classes = rng.sample(nouns, 120) + [wn.synset("dog.n.01"), wn.synset("tabby.n.01")]
    queries = rng.sample(nouns, 25) + [wn.synset("dog.n.01"), wn.synset("cat.n.01"),
                                       wn.synset("einstein.n.01")]  # an instance hyponym
    tax = Taxonomy(wn)
    sim = ClassSimilarity(tax, classes, measure)
    got = sim.rows(queries)
    for i, q in enumerate(queries):
        for j, c in enumerate(classes):
            if q == c:
                assert got[i, j] == pytest.approx(1.0)
                continue
            if measure == "wup":
                ref = q.wup_similarity(c)
            elif measure == "path":
                ref = q.path_similarity(c)
            else:
                ref = q.lch_similarity(c) / sim.lch_scale
            assert got[i, j] == pytest.approx(ref, abs=1e-6), (q, c)
    # a synset is most similar to itself
    assert got[-3, -2] == pytest.approx(1.0)


def test_word_row_takes_best_sense(wn):
    tax = Taxonomy(wn)
    classes = [wn.synset("dog.n.01"), wn.synset("car.n.01")]
    sim = ClassSimilarity(tax, classes, "wup")
    row = sim.word_row(wn.synsets("dog", "n")[:3])
    assert row[0] == pytest.approx(1.0) and row[1] < 0.6
    assert not sim.word_row([]).any()


def test_top_k_rows():
    m = np.array([[0.1, 0.9, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0], [0.3, 0.3, 0.8, 0.3]])
    ids, scores = top_k_rows(m, 2)
    assert ids[0].tolist() == [1, 2] and scores[0].tolist() == pytest.approx([0.9, 0.5])
    assert ids[1].tolist() == []
    assert ids[2][0] == 2 and len(ids[2]) == 2


def test_offsets_from_the_data_file_equal_nltks_synsets(wn):
    """The taxonomy reads senses and parents without NLTK's Synsets: the same offsets, and the
    same rows as through NLTK's reader (WordNet not in a folder) and as from Synset objects."""
    rng = random.Random(3)
    words = ["dog", "dogs", "geese", "mice", "einstein", "hot_dog", "bank", "nonexistentword", "Dog"]
    words += rng.sample(sorted(wn._lemma_pos_offset_map), 300)
    tax = Taxonomy(wn)
    for w in words:
        assert tax.noun_senses(w) == [s.offset() for s in wn.synsets(w, "n")], w
    nouns = rng.sample(sorted(wn.all_synsets("n"), key=lambda s: s.offset()), 300)
    for s in nouns + [wn.synset("einstein.n.01"), wn.synset("entity.n.01")]:
        assert sorted(tax.parents(s.offset())) == sorted(p.offset() for p in s.hypernyms() + s.instance_hypernyms())
    classes = nouns[:60]
    fast = ClassSimilarity(tax, classes, "wup")
    slow_tax = Taxonomy(wn)
    slow_tax._data = None                 # as for a WordNet that is not a folder on disk
    slow = ClassSimilarity(slow_tax, classes, "wup")
    offsets = [tax.noun_senses(w)[:3] for w in words[:80]]
    got = np.stack([fast.word_row(o) for o in offsets])
    assert np.array_equal(got, np.stack([slow.word_row(o) for o in offsets]))
    assert np.array_equal(got, np.stack([fast.word_row(wn.synsets(w, "n")[:3]) for w in words[:80]]))
