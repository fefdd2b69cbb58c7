"""What the release holds, drawn from one ``random.Random(seed)`` in a fixed order.

``draw_plan`` picks the classes and their queries, splits each class's images over the two
sources and its queries, makes the metadata records of every (source, query) with the rows of
failed downloads that no image refers to, and draws the validation and test labels. Each record keeps the subject its text
is about (``QueryMeta.subjects``), so ``true_noise`` gives each class's planted label noise.
Where the files go is the layout's business (``layout.py``); nothing here depends on the release version.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from webvision_example.classes import ExampleClass, choose_classes, load_wn, make_queries
from webvision_example.text import NOISE_SPREAD, TextMaker

SOURCES = ("google", "flickr")
TEST_PER_CLASS = 2
FAILED_ROWS = 0.10       # metadata records with no image (failed downloads)


@dataclass
class QueryMeta:
    """The metadata list of one (source, query) and the images that refer to its rows."""
    source: str
    query_id: int
    class_id: int
    records: list[dict]
    images: list[tuple[str, int]]   # (file name in the query's folder, 1-based row), by name
    subjects: list[int]             # per record: the class its text is about, or text.GENERIC


@dataclass
class Plan:
    classes: list[ExampleClass]
    queries: list[tuple[int, int, str]]   # (1-based query id, class id, query text)
    metadata: list[QueryMeta]             # every google query, then every flickr query
    val_labels: list[int]
    test_labels: list[int]
    json_styles: list[float]              # one per metadata file: how it is dumped

    def of_source(self, source: str) -> list[QueryMeta]:
        return [m for m in self.metadata if m.source == source]


def _split(total: int, weights: list[float], rng: random.Random) -> list[int]:
    counts = [0] * len(weights)
    for _ in range(total):
        counts[rng.choices(range(len(weights)), weights)[0]] += 1
    return counts


def _image_counts(classes: list[ExampleClass], queries: list[tuple[int, int, str]], per_class: int,
                  rng: random.Random) -> dict[str, dict[int, int]]:
    """source -> query id -> how many images: about half of a class's on each source, 60/40
    between its two queries."""
    by_class: dict[int, list[int]] = {}
    for qid, cid, _text in queries:
        by_class.setdefault(cid, []).append(qid)
    counts: dict[str, dict[int, int]] = {source: {} for source in SOURCES}
    for c in classes:
        qids = by_class[c.index]
        n_google = min(per_class, max(0, round(per_class * rng.uniform(0.4, 0.6))))
        weights = [0.6, 0.4][: len(qids)]
        for source, n in (("google", n_google), ("flickr", per_class - n_google)):
            for qid, k in zip(qids, _split(n, weights, rng)):
                counts[source][qid] = k
    return counts


def _new_photo_id(rng: random.Random, used: set[int]) -> int:
    photo_id = rng.randint(10**9, 10**11 - 1)
    while photo_id in used:
        photo_id = rng.randint(10**9, 10**11 - 1)
    used.add(photo_id)
    return photo_id


def _query_meta(source: str, query_id: int, class_id: int, n_images: int, text: TextMaker,
                rng: random.Random, used_photo_ids: set[int]) -> QueryMeta:
    """The records of one (source, query): ``n_images`` with an image, some failed ones between."""
    extra = sum(rng.random() < FAILED_ROWS for _ in range(n_images)) + (rng.random() < 0.5)
    total = n_images + extra
    failed = set(rng.sample(range(1, total + 1), extra))
    records: list[dict] = []
    images: list[tuple[str, int]] = []
    first = len(text.subjects)
    for row in range(1, total + 1):
        if source == "google":
            records.append(text.google_record(class_id, row))
            name = f"{len(images):06d}.jpg"
        else:
            photo_id = _new_photo_id(rng, used_photo_ids)
            records.append(text.flickr_record(class_id, photo_id))
            name = f"{photo_id}.jpg"
        if row not in failed:
            images.append((name, row))
    images.sort()
    return QueryMeta(source, query_id, class_id, records, images, text.subjects[first:])


def _shuffled_labels(classes: list[ExampleClass], per_class: int, rng: random.Random) -> list[int]:
    labels = [c.index for c in classes for _ in range(per_class)]
    rng.shuffle(labels)
    return labels


def draw_plan(seed: int, n_classes: int, per_class: int, val_per_class: int,
              noise_spread: float = NOISE_SPREAD) -> Plan:
    """The plan of a release (``noise_spread``: how much the classes' shares of texts about
    another class differ, ``text.noise_rates``)."""
    rng = random.Random(seed)
    classes = choose_classes(load_wn(), n_classes, rng)
    queries = make_queries(classes, rng)
    counts = _image_counts(classes, queries, per_class, rng)
    text = TextMaker(rng, classes, noise_spread)
    used_photo_ids: set[int] = set()
    metadata = [_query_meta(source, qid, cid, counts[source][qid], text, rng, used_photo_ids)
                for source in SOURCES for qid, cid, _q in queries]
    val_labels = _shuffled_labels(classes, val_per_class, rng)
    test_labels = _shuffled_labels(classes, TEST_PER_CLASS, rng)
    json_styles = [rng.random() for _ in metadata]
    return Plan(classes, queries, metadata, val_labels, test_labels, json_styles)


def true_noise(plan: Plan) -> list[float]:
    """Per class id: the share of its training images whose text is about another class (the
    planted noise; failed downloads, which have no image, do not count)."""
    noisy = [0] * len(plan.classes)
    total = [0] * len(plan.classes)
    for meta in plan.metadata:
        for _name, row in meta.images:
            total[meta.class_id] += 1
            subject = meta.subjects[row - 1]
            noisy[meta.class_id] += subject >= 0 and subject != meta.class_id
    return [n / t if t else 0.0 for n, t in zip(noisy, total)]
