"""The streaming loader: equal batches per rank, sampling distributions, repeated augmentation,
resume without repeats or gaps, bad members, eval and GPU-style decode paths."""
import io
import itertools
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from pipeline import schema
from pipeline.loader import (BadSamples, GpuAugment, LoaderConfig, ShardLoader, WorkerPlan, gpu_decode, merge_states,
                            plan_epoch, sample_stream)
from labelled_shards import write_labelled_shards
from pipeline.shards import ShardConfig, shard_all


@pytest.fixture(scope="module")
def shards(mined_v1, example_v1, tmp_path_factory):
    """The example's shards, deliberately uneven (small size limit, 3 parts)."""
    out = tmp_path_factory.mktemp("loader") / "s"
    shard_all(example_v1, mined_v1, out, ShardConfig(max_size=150_000), workers=1, num_parts=3)
    return out


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    """Shards of 5 classes with 400/120/50/20/10 samples (one tiny JPEG), and keyword labels."""
    root = tmp_path_factory.mktemp("skewed")
    counts = [400, 120, 50, 20, 10]
    cls = [c for c, n in enumerate(counts) for _ in range(n)]
    rng = np.random.default_rng(0)
    rng.shuffle(cls)
    kws = [[0] if i % 2 else [0, 1 + (i % 7 == 0)] for i in range(len(cls))]
    out = write_labelled_shards(root, cls, kws, max_count=45)
    return out / "train", counts, kws


def test_plan_equal_batches_and_every_shard_once():
    sizes = {f"s{i:02d}": float(n) for i, n in enumerate([500, 3, 77, 250, 250, 1, 90, 400, 13, 60, 333])}
    for world, workers in [(1, 1), (2, 3), (3, 2), (4, 4)]:
        plans = plan_epoch(sizes, epoch=5, seed=1, world_size=world, workers=workers, batch_images=32)
        batches = [sum(w.batches for w in rank) for rank in plans]
        assert len(set(batches)) == 1
        assigned = [s for rank in plans for w in rank for s in w.shards]
        assert sorted(assigned) == sorted(sizes)
        for rank in plans:
            for w in rank:
                assert w.batches * 32 >= sum(sizes[s] for s in w.shards)
    a = plan_epoch(sizes, 0, 1, 2, 2, 32)
    b = plan_epoch(sizes, 1, 1, 2, 2, 32)
    assert [[w.shards for w in r] for r in a] != [[w.shards for w in r] for r in b]   # per-epoch shuffle
    assert [[w.shards for w in r] for r in a] == [[w.shards for w in r] for r in plan_epoch(sizes, 0, 1, 2, 2, 32)]
    with pytest.raises(ValueError, match="every rank"):
        plan_epoch({"a": 1.0}, 0, 0, 2, 1, 8)


def _run_epoch(split, cfg, world):
    loaders = [ShardLoader(split, cfg, rank=r, world_size=world) for r in range(world)]
    lengths = [len(l) for l in loaders]
    batches = [list(l) for l in loaders]
    return lengths, batches


def test_equal_batch_counts_across_ranks_and_every_sample_once(shards):
    split = shards / "train"
    sizes = schema.read_sizes(split)
    assert len(set(sizes.values())) > 1    # uneven shards
    total = sum(sizes.values())
    cfg = LoaderConfig(batch_size=8, workers=2, shuffle_buffer=20, image_size=32)
    lengths, batches = _run_epoch(split, cfg, world=3)
    assert len(set(lengths)) == 1 and [len(b) for b in batches] == lengths
    real = [int(i) for rank in batches for b in rank for i, p in zip(b["index"], b["meta"].padding) if not p]
    assert sorted(real) == sorted(pq_indices(split)) and len(real) == total
    for rank in batches:
        for b in rank:
            assert b["image"].shape == (8, 3, 32, 32) and b["image"].dtype == torch.uint8
            assert b["keyword_offsets"][-1] == len(b["keyword_ids"])
            assert torch.allclose(torch.segment_reduce(b["label_weights"], "sum", offsets=b["label_offsets"]),
                                  torch.ones(8), atol=1e-5)


def pq_indices(split):
    import pyarrow.parquet as pq
    return pq.read_table(split / schema.MANIFEST_FILE, columns=["index"])["index"].to_pylist()


def _stream_classes(split, cfg, epochs):
    loader = ShardLoader(split, cfg)
    plan = WorkerPlan(list(loader.sizes), 0, list(loader.sizes))
    out = []
    for e in range(epochs):
        quota = int(round(sum(loader.expected.values())))
        rng = np.random.default_rng(e)
        for sample, pad, _ in sample_stream(split, plan, quota, loader.repeat, 100, rng, BadSamples(1e9)):
            out.append(sample["labels"])
    return out


@pytest.mark.parametrize("mode", ["class", "sqrt"])
def test_sampling_matches_target_distribution(skewed, mode):
    split, counts, _ = skewed
    labels = _stream_classes(split, LoaderConfig(sampling=mode), epochs=12)
    hist = np.bincount([l["class_id"] for l in labels], minlength=5)
    target = np.ones(5) if mode == "class" else np.sqrt(counts)
    expected = target / target.sum() * hist.sum()
    assert chisquare(hist, expected).pvalue > 1e-3, (hist, expected)
    # the natural stream is far from that target: the test can tell them apart
    natural = np.array(counts) * 12
    assert chisquare(natural, natural.sum() * target / target.sum()).pvalue < 1e-12


def test_keyword_repeat_factor_sampling(skewed):
    split, counts, kws = skewed
    cfg = LoaderConfig(sampling="keyword", keyword_threshold=0.5)
    loader = ShardLoader(split, cfg)
    n = len(kws)
    freq = np.bincount([k for ks in kws for k in ks], minlength=3) / n
    r_k = np.maximum(1, np.sqrt(0.5 / freq))
    labels = _stream_classes(split, cfg, epochs=10)
    seen = Counter(tuple(l["keyword_ids"]) for l in labels)
    for group in [(0,), (0, 1), (0, 2)]:
        members = sum(1 for k in kws if tuple(k) == group)
        r = max(r_k[list(group)])
        assert seen[group] / 10 == pytest.approx(members * r, rel=0.1), group
    assert sum(loader.expected.values()) == pytest.approx(sum(max(r_k[k]) for k in kws))


def test_repeated_augmentation(shards):
    cfg = LoaderConfig(batch_size=12, workers=1, repeat_aug=3, image_size=48)
    batch = next(iter(ShardLoader(shards / "train", cfg)))
    inst = batch["index"].tolist()
    assert all(inst[i] == inst[i + 1] == inst[i + 2] for i in range(0, 12, 3))
    assert len(set(inst)) == 4
    copies = batch["image"][0:3].float()
    assert (copies[0] - copies[1]).abs().mean() > 1 or (copies[0] - copies[2]).abs().mean() > 1
    with pytest.raises(ValueError, match="multiple of repeat_aug"):
        ShardLoader(shards / "train", LoaderConfig(batch_size=10, repeat_aug=3))


def test_resume_without_repeats_or_gaps(shards):
    split = shards / "train"
    cfg = LoaderConfig(batch_size=8, workers=2, shuffle_buffer=8, image_size=32, seed=3)
    world = 2
    first, states = {}, []
    for r in range(world):
        loader = ShardLoader(split, cfg, rank=r, world_size=world)
        seen = []
        for i, b in enumerate(loader):
            seen += [(int(x), bool(p)) for x, p in zip(b["index"], b["meta"].padding)]
            if i == len(loader) // 2:
                break
        first[r] = seen
        states.append(loader.state_dict())
    state = merge_states(states)
    assert state["consumed"] and state["epoch"] == 0
    import pyarrow.parquet as pq
    man = pq.read_table(split / schema.MANIFEST_FILE).to_pydict()
    shard_of = dict(zip(man["index"], man["shard"]))
    consumed = set(state["consumed"])
    # after a restart (new processes, new loaders) the epoch goes on with the other shards
    second = []
    lengths = []
    for r in range(world):
        loader = ShardLoader(split, cfg, rank=r, world_size=world)
        loader.load_state_dict(state)
        lengths.append(len(loader))
        batches = list(loader)
        assert len(batches) == lengths[-1]
        second += [int(x) for b in batches for x, p in zip(b["index"], b["meta"].padding) if not p]
        assert loader.state_dict() == {"epoch": 1, "consumed": []}
    assert len(set(lengths)) == 1
    assert not {shard_of[i] for i in second} & consumed            # no consumed shard read again
    assert len(second) == len(set(second))                          # nothing twice in the rest
    delivered_before = {i for r in first for i, p in first[r] if not p and shard_of[i] in consumed}
    assert delivered_before | set(second) == set(man["index"])      # nothing skipped
    with pytest.raises(ValueError, match="lacks"):
        ShardLoader(split, cfg).load_state_dict({"epoch": 0, "consumed": ["nope.tar"]})


def test_bad_members_are_counted_not_fatal(shards, tmp_path):
    split = tmp_path / "train"
    shutil.copytree(shards / "train", split)
    names = list(schema.read_sizes(split))
    raw = (split / names[0]).read_bytes()
    (split / names[0]).write_bytes(raw[: len(raw) // 2])          # a truncated tar
    import tarfile
    garbage = 0
    for name in names[1:4]:       # every JPEG of three shards is garbage: more than a batch lost
        with tarfile.open(split / name) as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
        with tarfile.open(split / name, "w") as tar:
            for m, data in members:
                if m.name.endswith(".jpg"):
                    data = b"\xff\xd8\xff" + b"garbage" * 10
                    garbage += 1
                m.size = len(data)
                tar.addfile(m, io.BytesIO(data))
    assert garbage > 8
    cfg = LoaderConfig(batch_size=8, workers=2, image_size=32, log_bad_every_s=0)
    loader = ShardLoader(split, cfg)
    for epoch in range(2):        # the rank still yields its planned batch count, epoch after epoch
        n = len(loader)
        batches = list(loader)
        assert len(batches) == n and loader.epoch == epoch + 1
        assert all(b["image"].shape[0] == 8 for b in batches)
    assert loader.bad_samples >= 2 * garbage


def test_eval_mode_is_ordered_and_centre_cropped(shards):
    cfg = LoaderConfig(batch_size=5, workers=1, train=False, image_size=40)
    loader = ShardLoader(shards / "val", cfg)
    a = [b["index"].tolist() for b in loader]
    b = [b["index"].tolist() for b in ShardLoader(shards / "val", cfg)]
    assert a == b
    flat = [i for x in a for i in x]
    assert flat[: len(set(flat))] == sorted(set(flat))


def test_torchvision_decode_matches_pil(shards):
    base = dict(batch_size=6, workers=1, train=False, image_size=64)
    pil = next(iter(ShardLoader(shards / "val", LoaderConfig(**base))))
    tv = next(iter(ShardLoader(shards / "val", LoaderConfig(**base, decode="torchvision"))))
    assert torch.equal(pil["index"], tv["index"])
    assert (pil["image"].float() - tv["image"].float()).abs().mean() < 12


def test_gpu_path_on_cpu(shards):
    base = dict(batch_size=6, workers=1, train=False, image_size=64)
    ref = next(iter(ShardLoader(shards / "val", LoaderConfig(**base))))
    raw = next(iter(ShardLoader(shards / "val", LoaderConfig(**base, decode="gpu"))))
    assert raw["image"] is None and len(raw["jpeg_offsets"]) == 7 and raw["boxes"].shape == (6, 4)
    out = gpu_decode(raw, 64, "cpu")
    assert out.shape == (6, 3, 64, 64) and out.dtype == torch.uint8
    assert (out.float() - ref["image"].float()).abs().mean() < 12


def test_gpu_augment_normalises_and_jitters():
    x = torch.full((4, 3, 8, 8), 128, dtype=torch.uint8)
    aug = GpuAugment(jitter=0.0, channels_last=False)
    y = aug(x)
    assert torch.allclose(y[:, 0], torch.full((4, 8, 8), (128 / 255 - 0.485) / 0.229), atol=1e-5)
    assert y.is_contiguous()
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    # a grey image: contrast and saturation leave it as it is, so only brightness acts, by the
    # factor 1 + (2u - 1) j of the first draw, one per image
    grey = torch.full((6, 3, 8, 8), 100, dtype=torch.uint8)
    z = GpuAugment(jitter=0.4)(grey, generator=torch.Generator().manual_seed(0))
    u = torch.rand(6, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    expected = ((100 / 255 * (1 + (u * 2 - 1) * 0.4)).clamp(0, 1) - mean) / std
    assert torch.allclose(z, expected.expand_as(z), atol=1e-5)
    assert z.is_contiguous(memory_format=torch.channels_last)
    assert (z[:, 0, 0, 0].std() > 0.05)                       # each image its own factor
    # a colour image: every image changes, stays in range, and eval mode does not jitter
    g = torch.Generator().manual_seed(1)
    img = torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8, generator=g)
    plain = GpuAugment(jitter=0.4)(img, train=False)
    jittered = GpuAugment(jitter=0.4)(img, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(plain, GpuAugment(jitter=0.0)(img))
    assert ((jittered - plain).abs().flatten(1).mean(dim=1) > 1e-3).all()
    back = jittered * std + mean
    assert back.min() >= -1e-5 and back.max() <= 1 + 1e-5
    # saturation acts: the per-pixel spread over channels changes by image-dependent factors
    spread = lambda t: (t * std + mean).std(dim=1).mean(dim=(1, 2))
    assert not torch.allclose(spread(jittered) / spread(plain), torch.ones(8), atol=0.02)


def test_tar_reader_skips_damaged_headers_and_resyncs(tmp_path):
    import webdataset as wds
    from pipeline.loader import iter_tar
    path = tmp_path / "t.tar"
    w = wds.TarWriter(str(path), mtime=0)   # as our shard writer: ustar headers, no pax records
    for i in range(3):
        w.write({"__key__": f"{i:09d}", "jpg": bytes([i]) * 1000, "cls": str(i)})
    w.close()
    raw = path.read_bytes()
    bad = BadSamples(1e9)
    members = list(iter_tar(path, bad))
    names = [f"{i:09d}.{e}" for i in range(3) for e in ("cls", "jpg")]
    assert [n for n, _ in members] == names
    assert members[1][1] == bytes([0]) * 1000 and bad.count == 0 and bad.problem_count == 0
    # the third header (000000001.cls) loses its magic and name: that member is skipped, reading
    # resyncs at the next header (the tar reader notes the damage; samples are counted by read_shard)
    third = 512 + 512 + 512 + 1024
    damaged = bytearray(raw)
    damaged[third: third + 20] = b"x" * 20
    damaged[third + 257: third + 262] = b"xxxxx"
    path.write_bytes(bytes(damaged))
    got = list(iter_tar(path, bad))
    assert [n for n, _ in got] == names[:2] + names[3:] and bad.problem_count == 1 and bad.count == 0
    assert got[2][1] == bytes([1]) * 1000
    # a size field changed behind a valid magic: the checksum catches it, only that member is lost
    damaged = bytearray(raw)
    damaged[1024 + 124: 1024 + 135] = b"%011o" % 2600    # 000000000.jpg claims 2600 bytes
    path.write_bytes(bytes(damaged))
    bad = BadSamples(1e9)
    got = list(iter_tar(path, bad))
    assert [n for n, _ in got] == names[:1] + names[2:] and bad.problem_count == 1


def test_tar_reader_reads_pax_headers(tmp_path):
    import webdataset as wds
    from pipeline.loader import iter_tar
    path = tmp_path / "pax.tar"
    w = wds.TarWriter(str(path))            # float mtime: a pax header before every member
    w.write({"__key__": "k" * 120, "jpg": b"abc"})   # and a name longer than ustar's 100 bytes
    w.close()
    assert list(iter_tar(path, BadSamples(1e9))) == [("k" * 120 + ".jpg", b"abc")]


def test_reused_worker_buffers_never_overwrite_a_delivered_batch(shards):
    """Workers cycle through prefetch_factor + 2 shared buffers; batches kept by the consumer (here
    a whole epoch in a list, memory not pinned) must still hold their own images."""
    base = dict(batch_size=8, workers=2, image_size=32, prefetch_factor=2, seed=4)
    kept = [b["image"] for b in ShardLoader(shards / "train", LoaderConfig(**base, reuse_buffers=True))]
    fresh = [b["image"] for b in ShardLoader(shards / "train", LoaderConfig(**base, reuse_buffers=False))]
    assert len(kept) == len(fresh) > 2 * (2 + 2)   # more batches than the ring has buffers
    for a, b in zip(kept, fresh):
        assert torch.equal(a, b)
        assert a.is_contiguous(memory_format=torch.channels_last)
    assert len({t.untyped_storage().data_ptr() for t in kept}) == len(kept)


def test_ring_buffers_with_uneven_worker_quotas_and_a_slow_consumer(shards, monkeypatch):
    """Four workers with unequal quotas (the last one runs alone, and the DataLoader lets it get up
    to prefetch_factor x workers = 4 batches ahead) and a ring of prefetch_factor + 2 = 3 buffers each: a worker must wait for the main
    process to copy a batch out before it reuses its buffer, however slow that copy is."""
    import time
    from pipeline.loader.ring import ImageRing
    copy_out = ImageRing.copy_out

    def slow_copy_out(self, *args):
        time.sleep(0.03)          # a busy pin-memory thread: the workers run ahead meanwhile
        return copy_out(self, *args)

    monkeypatch.setattr(ImageRing, "copy_out", slow_copy_out)
    base = dict(batch_size=8, workers=4, image_size=32, prefetch_factor=1, seed=5)
    split = shards / "train"
    names = sorted(schema.read_sizes(split))
    # workers 0-2 stop after one batch; worker 3 then runs alone with up to 4 requests in flight
    uneven = [[WorkerPlan([n], 1, [n]) for n in names[:3]] + [WorkerPlan(names[3:], 10, names[3:])]]

    def epoch(reuse):
        loader = ShardLoader(split, LoaderConfig(**base, reuse_buffers=reuse))
        loader._plans = lambda: uneven
        return [b["image"] for b in loader]

    kept, fresh = epoch(True), epoch(False)
    assert len(kept) == len(fresh) == 13
    for a, b in zip(kept, fresh):
        assert torch.equal(a, b)


def test_stopping_mid_epoch_releases_the_workers(shards):
    """A consumer that breaks out of an epoch (workers blocked on a full ring) must not hang, and
    the next epoch still delivers every batch."""
    import time
    cfg = LoaderConfig(batch_size=8, workers=2, image_size=32, prefetch_factor=1, seed=6)
    loader = ShardLoader(shards / "train", cfg)
    t = time.monotonic()
    for i, _ in enumerate(loader):
        if i == 1:
            time.sleep(0.5)       # the workers fill their rings and block
            break
    n = len(loader)
    assert sum(1 for _ in loader) == n
    assert time.monotonic() - t < 30


def test_image_ring_protocol_never_lets_a_worker_overwrite_an_uncopied_batch():
    """The ring by itself: a forked writer that runs far ahead (no DataLoader pacing it) and a
    slow reader; every batch read holds what was written for it. Every other batch goes through
    the DataLoader's pin-memory function, as the pin thread would take it."""
    import multiprocessing
    import os
    import time
    from torch.utils.data._utils.pin_memory import pin_memory
    from pipeline.loader.ring import ImageRing, RingSlot
    ring = ImageRing(workers=1, slots=2, shape=(2, 4, 4, 3))
    ring.start()
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    parent = os.getpid()

    def writer():
        for c in range(8):
            slot, buf = ring.take(0, parent)
            buf.fill_(c)
            send.send((c, slot))

    proc = ctx.Process(target=writer)
    proc.start()
    try:
        for c in range(8):
            got, slot = recv.recv()
            assert got == c
            time.sleep(0.05)          # the writer would be two batches ahead by now
            if c % 2:
                out = pin_memory({"image": RingSlot(ring.id, 0, slot), "n": np.zeros(1)})["image"]
            else:
                out = ring.copy_out(0, slot, pin=False)
            assert out.shape == (2, 3, 4, 4) and bool((out == c).all()), (c, out.unique())
    finally:
        ring.stop()
        proc.join(10)
    assert proc.exitcode == 0


def test_workers_stream_on_into_the_next_epoch(shards):
    """Training workers go on into the next epoch (planned in the worker) instead of restarting:
    the batches are those of a fresh loader started at that epoch, and the stream is the same."""
    split = shards / "train"
    cfg = LoaderConfig(batch_size=8, workers=2, shuffle_buffer=8, image_size=32, seed=7)
    loader = ShardLoader(split, cfg)
    streamed, streams = [], []
    for epoch in range(3):
        streamed.append([(b["index"], b["image"]) for b in loader])
        streams.append(loader._stream)
    assert streams[0] is streams[1] is streams[2] is not None
    for epoch in range(3):
        fresh = ShardLoader(split, cfg)
        fresh.set_epoch(epoch)
        got = [(b["index"], b["image"]) for b in fresh]
        fresh.close()
        assert len(got) == len(streamed[epoch])
        for (i1, x1), (i2, x2) in zip(got, streamed[epoch]):
            assert torch.equal(i1, i2) and torch.equal(x1, x2)
    assert not torch.equal(streamed[0][0][0], streamed[1][0][0])    # epochs are shuffled anew
    loader.set_epoch(7)           # another epoch than the stream's: fresh workers
    next(iter(loader))
    assert loader._stream is None
    loader.close()


def test_batches_are_lent_views_of_the_ring_kept_intact_until_freed(shards):
    """Without pinned memory a batch's images are the ring buffer itself (no copy in the main
    process); a buffer goes back to its worker only when the last tensor using it is freed, also
    across an epoch left early and the fresh workers that then reuse the ring."""
    split = shards / "train"
    base = dict(batch_size=8, workers=2, image_size=32, prefetch_factor=2, seed=4)
    fresh = [b["image"] for b in ShardLoader(split, LoaderConfig(**base, reuse_buffers=False))]
    loader = ShardLoader(split, LoaderConfig(**base))
    try:
        _lent_views_stay_intact(loader, fresh)
    finally:
        loader.close()


def _lent_views_stay_intact(loader, fresh):
    import gc
    it = iter(loader)
    kept = [next(it)["image"][1:] for _ in range(2)]    # slices: views of the lent buffers
    ring = loader._ring
    buffers = {buf.data_ptr() for bufs in ring.buffers for buf in bufs}
    assert all(k.untyped_storage().data_ptr() in buffers for k in kept)
    it.close()                    # the epoch left early: fresh workers write into the same ring
    for _ in range(2):
        assert sum(1 for _ in loader) > 2 * ring.slots
    for k, f in zip(kept, fresh):
        assert torch.equal(k, f[1:])
    assert sum(map(len, ring.lent)) == 2
    del kept, k                   # the last references to the lent buffers
    gc.collect()
    assert sum(map(len, ring.lent)) == 0


def test_a_batchs_samples_are_read_before_its_images_are_decoded(shards, monkeypatch):
    """The worker pulls ``read_ahead`` samples from its stream, then decodes them back to back
    (not each decode between two stretches of the stream's code); the batches are those of the
    interleaved order (``read_ahead=1``), image for image."""
    from pipeline.loader import worker
    from pipeline.loader.augment import CpuAugment

    split = shards / "train"
    cfg = LoaderConfig(batch_size=8, workers=1, shuffle_buffer=16, image_size=32, seed=3, read_ahead=12)
    loader = ShardLoader(split, LoaderConfig(**{**vars(cfg), "read_ahead": 1}))
    epoch, plans = loader.epoch, loader._plans()[0]
    expected = [(b["index"], b["image"].clone()) for b in loader]
    loader.close()
    events = []
    real_stream, real_into = worker.sample_stream, CpuAugment.into

    def stream(*a, **k):
        for item in real_stream(*a, **k):
            events.append("read")
            yield item

    def into(self, data, out):
        events.append("decode")
        return real_into(self, data, out)

    monkeypatch.setattr(worker, "sample_stream", stream)
    monkeypatch.setattr(CpuAugment, "into", into)
    got = [(torch.as_tensor(b["index"]), b["image"].clone())
           for b in worker.StreamDataset(split, cfg, plans, loader.repeat, epoch, 0, sizes=loader.sizes)]
    assert len(got) == len(expected) > 2
    for (i1, x1), (i2, x2) in zip(got, expected):
        assert torch.equal(i1, i2) and torch.equal(x1, x2)
    runs = [(e, len(list(g))) for e, g in itertools.groupby(events)]
    n = sum(len(b[0]) for b in got)
    assert runs[:4] == [("read", 12), ("decode", 12), ("read", 12), ("decode", 12)]
    assert sum(k for e, k in runs if e == "decode") == n
    assert all(k <= 12 for _, k in runs)


def test_read_ahead_holds_at_most_its_bytes_of_jpegs():
    """``loader.read_ahead_mb``: with large photos the read-ahead stops at its byte bound before
    its sample count, and every sample still comes, in order."""
    from pipeline.loader.worker import read_ahead

    pulled = []

    def stream():
        for i in range(8):
            pulled.append(i)
            yield {"__key__": str(i), "jpg": b"x" * 100}, False, []

    seen = [(int(sample["__key__"]), len(pulled)) for sample, _, _ in read_ahead(stream(), 10, 250)]
    assert [k for k, _ in seen] == list(range(8))
    assert [n for _, n in seen] == [3, 3, 3, 6, 6, 6, 8, 8]      # 3 x 100 bytes >= 250: decoded, then on


@pytest.mark.parametrize("fmt", ["USTAR_FORMAT", "GNU_FORMAT", "PAX_FORMAT"])
def test_tar_reader_reads_what_tarfile_reads_in_every_format(tmp_path, fmt):
    """Tars made by other tools (a release's own archives, img2dataset's, GNU tar's): directories
    and links are skipped, long names come through ustar's prefix field, GNU's ././@LongLink
    members or pax records, and every regular file reads as Python's tarfile reads it."""
    import tarfile
    from pipeline.loader import iter_tar
    path = tmp_path / "t.tar"
    deep = "/".join(["d" * 60] * 2)                  # 121 characters: beyond ustar's 100-byte name
    with tarfile.open(path, "w", format=getattr(tarfile, fmt)) as tf:
        for name, data, kind in [("a", None, tarfile.DIRTYPE), ("a/0001.jpg", b"one", tarfile.REGTYPE),
                                 ("a/link.jpg", None, tarfile.SYMTYPE), (deep, None, tarfile.DIRTYPE),
                                 ("a/0003.cls", b"3", tarfile.REGTYPE),   # a long name must not stick
                                 (deep + "/0002.jpg", b"two" * 300, tarfile.REGTYPE)]:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "l" * 120 if fmt != "USTAR_FORMAT" else "0001.jpg"   # a GNU long link too
            info.size = len(data) if data else 0
            tf.addfile(info, io.BytesIO(data) if data else None)
    with tarfile.open(path) as tf:
        want = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers() if m.isfile()]
    assert [n for n, _ in want] == ["a/0001.jpg", "a/0003.cls", deep + "/0002.jpg"]
    bad = BadSamples(1e9)
    assert list(iter_tar(path, bad)) == want and bad.problem_count == 0
