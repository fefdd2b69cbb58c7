"""Planning an epoch: which shards each rank and each worker reads, and how many batches each
hands over, computed the same way on every rank and in every worker.

Shards are dealt to ranks and then to workers by expected sample count (greedy, in the epoch's
shuffled order), the epoch length is the largest rank's need, and the batches a rank has fewer
are added to its workers, which pad by reading their shards again (``WorkerPlan.pad_from``). So
every rank yields the same number of batches and every real sample appears once per epoch.
Counts come from ``sizes.json`` and ``manifest.parquet`` (or the repeat factors): no tar is
scanned to plan an epoch.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass
class WorkerPlan:
    shards: list[str]
    batches: int
    pad_from: list[str]                   # where padding samples come from (its shards, or others)


def deal(items: list[str], weight: dict[str, float], n: int) -> list[list[str]]:
    """Greedy balance: each item, in the given (per-epoch shuffled) order, to the bin with the
    least load so far; loads then differ by at most one item's weight."""
    bins: list[list[str]] = [[] for _ in range(n)]
    load = [0.0] * n
    for it in items:
        b = min(range(n), key=lambda i: (load[i], i))
        bins[b].append(it)
        load[b] += weight[it]
    return bins


def plan_epoch(expected: dict[str, float], epoch: int, seed: int, world_size: int, workers: int,
               batch_images: int, consumed: set[str] | frozenset = frozenset(),
               shuffle: bool = True) -> list[list[WorkerPlan]]:
    """Per rank, per worker: shards and batch quota. Same result on every rank."""
    names = sorted(expected)
    if len(names) < world_size:
        raise ValueError(f"{len(names)} shards for {world_size} ranks: write smaller shards "
                         "(--max-size/--max-count) so that every rank has at least one")
    if shuffle:
        random.Random(seed * 1_000_003 + epoch).shuffle(names)
    remaining = [n for n in names if n not in consumed]
    workers = max(1, workers)
    plans = []
    for rank_shards in deal(remaining, expected, world_size):
        per_worker = deal(rank_shards, expected, workers)
        need = [math.ceil(sum(expected[s] for s in ws) / batch_images) for ws in per_worker]
        plans.append([WorkerPlan(ws, b, ws) for ws, b in zip(per_worker, need)])
    if not remaining:
        return plans
    n_batches = max(sum(w.batches for w in rank) for rank in plans)
    for r, rank in enumerate(plans):
        extra = n_batches - sum(w.batches for w in rank)
        with_shards = [w for w in rank if w.shards] or rank
        for i in range(extra):
            w = with_shards[i % len(with_shards)]
            w.batches += 1
            if not w.pad_from:  # a rank with no shard left pads from the epoch's other shards
                w.pad_from = [remaining[(r + i) % len(remaining)]]
    return plans


@dataclass
class EpochPlanner:
    """What :func:`plan_epoch` needs besides the epoch: the same on every rank and in every worker,
    so a worker can plan the epochs after the first by itself."""
    expected: dict[str, float]
    seed: int
    world_size: int
    workers: int
    batch_images: int
    shuffle: bool

    def __call__(self, epoch: int, consumed: set[str] | frozenset = frozenset()) -> list[list[WorkerPlan]]:
        return plan_epoch(self.expected, epoch, self.seed, self.world_size, self.workers,
                          self.batch_images, consumed, shuffle=self.shuffle)


def merge_states(states: list[dict]) -> dict:
    """One resumable loader state from every rank's ``state_dict()`` (e.g. Accelerate's
    ``gather_object``): the epoch, and the shards consumed by any rank."""
    epochs = {s["epoch"] for s in states}
    if len(epochs) != 1:
        raise ValueError(f"ranks are in different epochs: {sorted(epochs)}")
    return {"epoch": epochs.pop(), "consumed": sorted({c for s in states for c in s["consumed"]})}
