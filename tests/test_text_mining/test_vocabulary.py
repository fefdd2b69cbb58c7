import pandas as pd

from text_mining.config import VocabularyConfig
from text_mining.vocabulary import filter_vocabulary


def _counts():
    rows = [("photo", 900, 800), ("image", 700, 600), ("dog", 300, 250), ("cat", 260, 250),
            ("beach", 90, 80), ("puppy", 40, 30), ("zebra", 12, 10), ("aardvark", 3, 3),
            ("qwerty", 1, 1), ("bird", 120, 100)]
    return pd.DataFrame(rows, columns=["keyword", "count", "df"])


def test_filter_rules_and_order():
    vocab, info = filter_vocabulary(_counts(), n_images=1000,
                                    cfg=VocabularyConfig(drop_top=1, max_df=0.5, min_df=5, max_size=100))
    # photo: most common; image: in 60% > 50% of images; aardvark, qwerty: below min_df
    assert vocab["keyword"].tolist() == ["cat", "dog", "bird", "beach", "puppy", "zebra"]
    assert vocab["id"].tolist() == list(range(6))
    assert vocab.loc[vocab.keyword == "dog", "count"].item() == 300
    assert info["dropped_most_common"] == ["photo"]
    assert info["dropped_over_max_df"] == ["image"]
    assert info["dropped_rare_count"] == 2 and info["vocabulary_size"] == 6


def test_size_cap_keeps_most_frequent():
    vocab, info = filter_vocabulary(_counts(), 1000, VocabularyConfig(drop_top=0, max_df=1.0, min_df=1, max_size=3))
    assert vocab["keyword"].tolist() == ["photo", "image", "cat"]
    assert info["dropped_over_max_size_count"] == 7
