"""The sample stream of one worker and epoch, as a list of composable stages:

    shard_passes(plan)             the worker's shards once, then its padding sources again and again
    -> read_samples(split, bad)    complete samples of each shard, in order (tar.read_shard);
                                   samples lost counted against the manifest
    -> repeat_by_factors(r, rng)   0, 1 or more copies of each sample (stochastic rounding)
    -> tracked_shuffle(n, rng, d)  a shuffle buffer that knows when a shard's last copy left it and
                                   keeps copies of one image d samples apart
    -> take(quota)                 exactly the worker's quota

Each stage is a function of its parameters that returns a function of the stream before it
(as webdataset's and open_clip's pipelines read); :func:`compose` chains them. What flows
between the stages are :class:`Drawn` samples and two markers: :class:`ShardEnd` (every sample
of a shard has been read) and :data:`PASS_END` (a pass over the shards ended: the shuffle buffer
is drained before padding samples come, so real samples never wait behind padding ones).

The decode, augment and batch stages come after these, in the worker (:mod:`.worker`), since
crops are written straight into the batch's image buffer.
"""
from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .bad import BadSamples
from .plan import WorkerPlan
from .sampling import copies
from .tar import read_sample_at, read_shard

Stage = Callable[[Iterable], Iterator]


@dataclass(slots=True)
class Drawn:
    """A sample read from a shard: its members (``jpg``, ``labels``, ...; or :class:`Unread`), where
    it came from and whether it pads the epoch (read again after the worker's shards ran out).
    Not frozen: a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``,
    0.68 against 0.21 us a sample (timeit); no stage changes one."""
    sample: "dict | Unread"
    shard: str
    position: int
    padding: bool


class Unread:
    """A padding sample not read yet: where it lies in its shard (:func:`.tar.read_shard`'s
    index of the real pass). A padding pass refills the shuffle buffer (``shuffle_buffer``
    samples) before its first draw, though the epoch often takes only a few of them: reading and
    checking them all again doubled the sample stream's cost on the benchmark's 1,000 images (24
    padding samples wanted, 1,023 read and parsed, ~50 us each on the shared 2-core VM). The buffer
    now holds these, and only a drawn one is read (:meth:`load`): the same samples, in the same
    order, as the full re-read gave."""

    __slots__ = ("path", "start", "end")

    def __init__(self, path: Path, start: int, end: int):
        self.path, self.start, self.end = path, start, end

    def load(self) -> dict:
        """The sample; one without its image (skipped as undecodable) if the file changed."""
        got = read_sample_at(self.path, self.start, self.end)
        return got if got is not None else {"__key__": f"{self.path.name}@{self.start}"}


@dataclass(frozen=True, slots=True)
class ShardEnd:
    shard: str


PASS_END = object()


def compose(source: Iterable, *stages: Stage) -> Iterator:
    stream = iter(source)
    for stage in stages:
        stream = stage(stream)
    return stream


def shard_passes(plan: WorkerPlan) -> Iterator:
    """(shard, padding) for the worker's shards, then for its padding sources, again and again
    (the stream is cut by :func:`take`); :data:`PASS_END` after each pass."""
    for shard in plan.shards:
        yield shard, False
    yield PASS_END
    while plan.pad_from:
        for shard in plan.pad_from:
            yield shard, True
        yield PASS_END


def read_samples(split_dir: Path, bad: BadSamples, sizes: dict[str, int] | None = None,
                 fallback: Iterable[str] = (), lazy: bool = True) -> Stage:
    """Each shard's complete samples as :class:`Drawn`, then :class:`ShardEnd` for a real one.

    What a real shard lost is counted in ``bad`` against ``sizes`` (its manifest count; a missing
    or unreadable file loses all of them); padding reads count nothing (their losses were counted
    in the real pass). A pass that yields no sample at all (every shard of it empty, missing or
    unreadable) is made up by padding from the ``fallback`` shards (the rank's others, the
    split's), each read at most until one gives samples; only a split with no readable sample
    left is an error. ``lazy`` (local files): a padding read of a shard read in full before is
    :class:`Unread` entries from that read's index, loaded only when drawn."""
    fallback = list(dict.fromkeys(fallback))
    muted = BadSamples(float("inf"))        # padding reads: nothing counted, nothing logged
    local = lazy and isinstance(split_dir, Path)     # files that can be read at an offset (no URL, no pipe)

    def stage(passes: Iterable) -> Iterator:
        sources, got_any = [], False
        dead: set[str] = set()              # shards that gave no sample: not read again for padding
        spans: dict[str, list] = {}         # each shard read in full: its samples' byte ranges

        def read(shard: str, padding: bool) -> Iterator[Drawn]:
            path = split_dir / shard
            if padding and shard in spans:      # read this epoch already: the same samples, lazily
                for pos, (start, end) in enumerate(spans[shard]):
                    yield Drawn(Unread(path, start, end), shard, pos, padding)
                return
            expected = None if padding or sizes is None else sizes.get(shard)
            index = [] if local and not padding else None
            n = 0
            for pos, sample in enumerate(read_shard(path, muted if padding else bad, expected, index)):
                n += 1
                yield Drawn(sample, shard, pos, padding)
            if not n:
                dead.add(shard)
            elif index is not None:
                spans[shard] = index

        for what in passes:
            if what is PASS_END:
                empty = bool(sources) and not got_any
                sources, got_any = [], False
                yield PASS_END
                if empty:
                    for shard in fallback:
                        if shard not in dead:
                            got = yield from _count(read(shard, True))
                            if got:
                                break
                    else:
                        raise RuntimeError(f"no readable sample in any shard of {split_dir}: cannot fill the epoch")
                continue
            shard, padding = what
            sources.append(shard)
            if not (padding and shard in dead):
                got_any = (yield from _count(read(shard, padding))) or got_any
            if not padding:
                yield ShardEnd(shard)
    return stage


def _count(items: Iterator) -> Iterator:
    """Yields ``items``; returns how many there were (``n = yield from _count(...)``)."""
    n = 0
    for it in items:
        n += 1
        yield it
    return n


def repeat_by_factors(factors: dict[str, np.ndarray] | None, rng: np.random.Generator) -> Stage:
    """Each sample ``copies(r)`` times, r its repeat factor (:mod:`.sampling`); no factors: once."""
    def stage(items: Iterable) -> Iterator:
        if factors is None:
            yield from items
            return
        for it in items:
            if type(it) is Drawn:
                f = factors.get(it.shard)
                n = 1 if f is None else copies(float(f[min(it.position, len(f) - 1)]), rng)
                for _ in range(n):
                    yield it
            else:
                yield it
    return stage


def _uniforms(rng: np.random.Generator, block: int = 1024) -> Iterator[float]:
    """Uniform floats in [0, 1) from ``rng``, drawn ``block`` at a time: ``int(rng.integers(n))``
    costs 1.5 us a call, a draw from a block 0.15 us (timeit), for every sample of the stream."""
    while True:
        yield from rng.random(block).tolist()


def tracked_shuffle(buffer_size: int, rng: np.random.Generator, spread: int = 0) -> Stage:
    """(sample, is_padding, shards whose every copy has now been delivered) out of a shuffle
    buffer of ``buffer_size`` (1: in order). A shard is finished when it has been read to its end
    and its last real copy left the buffer; that is what makes a resume exact (:mod:`.plan`).

    ``spread`` > 0: a copy of an image is never emitted within ``spread`` samples of the last one
    (so with ``spread`` = images per batch no batch holds two): the draw from the buffer skips
    such copies, and one that cannot be placed (only recent images' copies left) is dropped."""
    def stage(items: Iterable) -> Iterator:
        uniform = _uniforms(rng)
        buf: list[Drawn] = []
        pending: dict[str, int] = {}
        closed: set[str] = set()
        done: list[str] = []
        recent: deque = deque()
        recent_set: set = set()

        def below(n: int) -> int:
            return min(int(next(uniform) * n), n - 1)

        def pick() -> int | None:
            i = below(len(buf))
            if not spread or (buf[i].shard, buf[i].position) not in recent_set:
                return i
            for _ in range(8):
                i = below(len(buf))
                if (buf[i].shard, buf[i].position) not in recent_set:
                    return i
            free = [j for j, b in enumerate(buf) if (b.shard, b.position) not in recent_set]
            return free[below(len(free))] if free else None

        def emit():
            nonlocal done
            i = pick()
            drop = i is None            # a copy of a recent image, nothing else in the buffer
            i = below(len(buf)) if drop else i
            it = buf[i]
            buf[i] = buf[-1]
            buf.pop()
            if not it.padding:
                pending[it.shard] -= 1
                if pending[it.shard] == 0 and it.shard in closed:
                    done.append(it.shard)
            if drop:
                return None
            if spread:
                key = (it.shard, it.position)
                recent.append(key)
                recent_set.add(key)
                if len(recent) > spread:
                    recent_set.discard(recent.popleft())
            finished, done = done, []
            sample = it.sample
            return (sample if type(sample) is dict else sample.load()), it.padding, finished

        for it in items:
            if it is PASS_END:
                while buf:
                    out = emit()
                    if out is not None:
                        yield out
            elif type(it) is ShardEnd:
                closed.add(it.shard)
                if pending.get(it.shard, 0) == 0:   # nothing of it was drawn (or all bad): delivered
                    done.append(it.shard)
            else:
                if not it.padding:
                    pending[it.shard] = pending.get(it.shard, 0) + 1
                buf.append(it)
                if len(buf) >= buffer_size:
                    out = emit()
                    if out is not None:
                        yield out
    return stage


def take(n: int) -> Stage:
    return lambda items: itertools.islice(items, max(0, n))


def sample_stream(split_dir: Path, plan: WorkerPlan, quota: int, factors: dict[str, np.ndarray] | None,
                  buffer_size: int, rng: np.random.Generator, bad: BadSamples, sizes: dict[str, int] | None = None,
                  fallback: Iterable[str] = (), spread: int = 0) -> Iterator[tuple[dict, bool, list[str]]]:
    """Exactly ``quota`` samples of one worker's epoch as (sample, is_padding, shards finished);
    ``sizes``, ``fallback``: see :func:`read_samples`; ``spread``: see :func:`tracked_shuffle`."""
    return compose(shard_passes(plan),
                   read_samples(split_dir, bad, sizes, fallback),
                   repeat_by_factors(factors, rng),
                   tracked_shuffle(buffer_size, rng, spread),
                   take(quota))
