"""Typed configuration of the text-mining stage (configs/text_mining/*.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field
import re
from typing import Literal, Optional, Union

from webtag.config import InvalidValue, above, at_least, between, check


CLASS_SLICE = re.compile(r"^\s*(\d*)\s*:\s*(\d*)\s*$")


def check_class_spec(key: str, value) -> None:
    """A class subset is None, a slice ``"A:B"`` or a list of class ids (InvalidValue otherwise).
    YAML reads an unquoted ``10:50`` as the base-60 number 650: such a value arrives as a string
    without a colon and is refused, with the advice to quote it."""
    if value is None or isinstance(value, list):
        if value is not None and (not value or any(i < 0 for i in value) or len(set(value)) != len(value)):
            raise InvalidValue(key, value, "a non-empty list of distinct class ids >= 0")
        return
    if not CLASS_SLICE.match(value):
        raise InvalidValue(key, value, "a slice 'A:B' of class ids (quote it in YAML: '10:50') or a list of ids")


@dataclass
class ReaderConfig:
    """Reading a WebVision release."""
    meta_root: Optional[str] = None       # where the per-query JSON lives; None: detect under the root
    images_root: Optional[str] = None     # where train images live; None: the release root
    sources: list[str] = field(default_factory=lambda: ["google", "flickr"])
    # class subset: None (all), a slice "A:B" of the release's class ids or a list of ids; the kept
    # classes are renumbered 0..K-1 in ascending order (so "0:50", mini-WebVision, keeps its ids)
    classes: Optional[Union[list[int], str]] = None
    check_images: Literal["auto", "always", "never"] = "auto"  # auto: if the first listed images exist
    on_error: Literal["skip", "fail"] = "skip"  # skip: count bad input in the report; fail: stop
    # web data (img2dataset tars or a table, text_mining/webdata.py): the classes file of WordNet ids
    # (--classes); None: the input is a WebVision release
    class_list: Optional[str] = None

    def __post_init__(self) -> None:
        check_class_spec("classes", self.classes)


@dataclass
class WordNetConfig:
    nltk_data: Optional[str] = None       # an nltk_data folder holding corpora/wordnet; None: NLTK's lookup


@dataclass
class KeywordConfig:
    """Keyword extraction from title, description and tags."""
    tagger: Literal["auto", "nltk", "wordnet"] = "auto"  # auto: NLTK's tagger if installed, else WordNet lexicon
    fields: list[str] = field(default_factory=lambda: ["title", "description", "tags"])
    min_length: int = 2
    max_length: int = 30
    max_chars: int = 2000                 # per field; longer text is cut (bounded work per record)

    def __post_init__(self) -> None:
        check(self, min_length=at_least(1), max_length=at_least(self.min_length), max_chars=at_least(1))



@dataclass
class VocabularyConfig:
    """Vocabulary filter: drop the most common keywords and the rare ones, cap the size."""
    drop_top: int = 20                    # drop the N keywords with the highest document frequency
    max_df: float = 0.05                  # and every keyword in more than this fraction of images
    min_df: int = 5                       # drop keywords in fewer images than this
    max_size: int = 35000

    def __post_init__(self) -> None:
        check(self, drop_top=at_least(0), max_df=between(0, 1, low_open=True), min_df=at_least(1), max_size=at_least(1))



@dataclass
class Word2VecConfig:
    """gensim word2vec trained on the mined keywords (+ query words) in the reduce step."""
    vector_size: int = 100
    window: int = 5
    epochs: int = 5
    sg: int = 0                           # 0: CBOW (word2vec's default, 3.4x cheaper), 1: skip-gram
    negative: int = 5
    workers: int = 0                      # threads; 0: all cores (not bit-reproducible), 1: deterministic
    seed: int = 0
    max_sentences: int = 1_000_000        # images' sentences trained on (a seeded sample beyond); 0: all
    keep_rare: int = 20                   # ... plus every sentence with a keyword kept fewer times so far

    def __post_init__(self) -> None:
        check(self, vector_size=at_least(1), window=at_least(1), epochs=at_least(1), sg=between(0, 1),
              negative=at_least(0), workers=at_least(0), max_sentences=at_least(0), keep_rare=at_least(0))


@dataclass
class WeightsConfig:
    """LW-Set label weights: text similarity + WordNet neighbourhood of the query + KNN labels."""
    measure: Literal["wup", "path", "lch"] = "wup"   # WordNet similarity of noun synsets
    max_senses: int = 3                   # noun senses of a keyword compared with the classes
    wordnet_mix: float = 0.5              # keyword-class score = mix * WordNet + (1 - mix) * word vectors
    table_top_k: int = 20                 # classes kept per keyword in the keyword x class table
    query_top_k: int = 10                 # classes kept per query class (its WordNet neighbourhood)
    text: float = 0.4                     # weight of the text component
    query: float = 0.4                    # weight of the query component
    knn: float = 0.2                      # weight of the KNN-label component
    knn_k: int = 10                       # neighbours per image
    knn_reference: int = 100000           # images sampled as the KNN reference set
    # neighbour search (text_mining/knn.py): ivf scans the knn_probe lists nearest to the image of
    # knn_lists clusters of the reference set (coarse centroids trained in the vocabulary step);
    # exact compares with every reference image (2e7 FLOPs an image at 100k)
    knn_search: Literal["ivf", "exact"] = "ivf"
    knn_lists: int = 0                    # ivf clusters; 0: about 2 sqrt(reference size), 632 at 100k
    knn_probe: int = 64                   # ivf clusters scanned per image (recall@10 0.966 at 1.6M images)
    top_k: int = 10                       # label weights kept per image
    power: float = 4.0                    # sharpening: weights proportional to score ** power
    seed: int = 0

    def __post_init__(self) -> None:
        check(self, max_senses=at_least(1), wordnet_mix=between(0, 1), table_top_k=at_least(1),
              query_top_k=at_least(1), text=at_least(0), query=at_least(0), knn=at_least(0), knn_k=at_least(1),
              knn_reference=at_least(1), knn_lists=at_least(0), knn_probe=at_least(1), top_k=at_least(1),
              power=above(0))
        if self.text + self.query + self.knn <= 0:
            raise InvalidValue("text", self.text, "text + query + knn must be > 0 (the label weights' components)")


@dataclass
class ReduceConfig:
    """Memory of the reduce steps (vocabulary, merge) and of the tag step: how much per-record data
    they hold at a time. Inputs larger than that go out of core (hash-partitioned passes over
    spill files, batches of records); the outputs are the same either way. Tables of distinct
    keywords (the vocabulary, the merged keyword counts) and the KNN reference set
    (weights.knn_reference) are held whole: they grow with the vocabulary, not the records."""
    memory_mb: int = 1024                 # the per-record working set (approximate), in MB

    def __post_init__(self) -> None:
        check(self, memory_mb=at_least(1))


@dataclass
class TextMiningConfig:
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    wordnet: WordNetConfig = field(default_factory=WordNetConfig)
    keywords: KeywordConfig = field(default_factory=KeywordConfig)
    vocabulary: VocabularyConfig = field(default_factory=VocabularyConfig)
    word2vec: Word2VecConfig = field(default_factory=Word2VecConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    reduce: ReduceConfig = field(default_factory=ReduceConfig)
