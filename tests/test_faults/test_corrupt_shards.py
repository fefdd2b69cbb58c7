"""Corrupt bytes in shards, done for real on shards written by the shard writer: flipped bits in
a header, a member declaring 1 TB, a broken checksum, an empty or missing shard, truncation at a
member boundary and inside a member, garbage between members, and a seeded property test of
random flips and truncations. The loader never raises on them, and what it delivers plus the
samples it counts lost is the manifest's count."""
import logging
import random
import shutil
import tarfile

import pytest

from pipeline import schema
from pipeline.loader import BadSamples, LoaderConfig, ShardLoader, read_shard
from pipeline.shards import ShardConfig, shard_all


@pytest.fixture(scope="module")
def shards(mined_v1, example_v1, tmp_path_factory):
    """The example's train shards, 10 samples each (13 shards)."""
    out = tmp_path_factory.mktemp("corrupt") / "s"
    shard_all(example_v1, mined_v1, out, ShardConfig(max_count=10), workers=1, num_parts=1)
    return out / "train"


@pytest.fixture
def split(shards, tmp_path):
    """A copy of the train split to damage."""
    shutil.copytree(shards, tmp_path / "train")
    return tmp_path / "train"


def members(path):
    """(name, header offset, data offset, size) of each member, as tarfile reads them."""
    with tarfile.open(path) as tar:
        return [(m.name, m.offset, m.offset_data, m.size) for m in tar]


def first_shard(split):
    name = next(iter(schema.read_sizes(split)))
    return name, split / name, schema.read_sizes(split)[name]


def read_counted(path, n):
    """Keys delivered by read_shard and the BadSamples that counted the rest."""
    bad = BadSamples(0)
    keys = [s["__key__"] for s in read_shard(path, bad, n)]
    assert len(keys) + bad.count == n
    return keys, bad


def keys_of(path):
    return list(dict.fromkeys(name.split(".")[0] for name, *_ in members(path)))


def patch(path, offset, new: bytes):
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(new)] = new
    path.write_bytes(bytes(raw))


def header_of(path, suffix, nth=2):
    """The header offset of the nth sample's member with this suffix."""
    return [m for m in members(path) if m[0].endswith(suffix)][nth][1]


def with_checksum(header: bytearray) -> bytearray:
    header[148:156] = b" " * 8
    header[148:155] = b"%06o\0" % sum(header)
    return header


@pytest.mark.parametrize("byte, bit", [(124, 0x80), (130, 0x04)])
def test_one_flipped_bit_in_a_size_field_loses_one_sample(split, byte, bit):
    """0x80 on the first byte makes the field GNU base-256 (today: OverflowError); a digit's bit
    makes it declare more bytes than the member has (today: the rest of the shard is lost)."""
    name, path, n = first_shard(split)
    keys = keys_of(path)
    at = header_of(path, ".jpg") + byte
    raw = path.read_bytes()
    patch(path, at, bytes([raw[at] ^ bit]))
    got, bad = read_counted(path, n)
    assert got == keys[:2] + keys[3:] and bad.count == 1


def test_a_member_declaring_1_tb_is_skipped_without_allocating_it(split, caplog):
    name, path, n = first_shard(split)
    keys = keys_of(path)
    at = header_of(path, ".jpg")
    header = bytearray(path.read_bytes()[at:at + 512])
    header[124:136] = b"\x80" + (1 << 40).to_bytes(11, "big")       # valid base-256, valid checksum
    patch(path, at, bytes(with_checksum(header)))
    with caplog.at_level(logging.WARNING, logger="pipeline.loader"):
        got, bad = read_counted(path, n)
    assert got == keys[:2] + keys[3:] and bad.count == 1
    assert "1099511627776 bytes runs past the end of the file" in caplog.text


def test_a_header_with_a_broken_checksum_is_rejected(split, caplog):
    """One flipped bit in the mtime field: only the checksum can tell; the member is not trusted."""
    name, path, n = first_shard(split)
    keys = keys_of(path)
    at = header_of(path, ".json", nth=4) + 136 + 3
    raw = path.read_bytes()
    patch(path, at, bytes([raw[at] ^ 0x01]))
    with caplog.at_level(logging.WARNING, logger="pipeline.loader"):
        got, bad = read_counted(path, n)
    assert got == keys[:4] + keys[5:] and bad.count == 1
    lines = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert len(lines) == 1 and "1 sample(s) lost" in lines[0] and "checksum mismatch" in lines[0]


@pytest.mark.parametrize("kind", ["empty tar", "empty file", "missing file"])
def test_an_empty_or_missing_shard_counts_all_its_samples(split, kind):
    name, path, n = first_shard(split)
    if kind == "empty tar":
        tarfile.open(path, "w").close()
    elif kind == "empty file":
        path.write_bytes(b"")
    else:
        path.unlink()
    got, bad = read_counted(path, n)
    assert got == [] and bad.count == n


def test_a_shard_truncated_at_a_member_boundary_counts_the_rest(split):
    name, path, n = first_shard(split)
    keys = keys_of(path)
    cut = [m for m in members(path) if m[0].startswith(keys[6])][0][1]    # before sample 6's first member
    path.write_bytes(path.read_bytes()[:cut])
    got, bad = read_counted(path, n)
    assert got == keys[:6] and bad.count == n - 6


def test_a_shard_truncated_inside_a_member_counts_the_rest_and_names_the_shard(split, caplog):
    name, path, n = first_shard(split)
    keys = keys_of(path)
    m = [m for m in members(path) if m[0].endswith(".jpg")][3]
    path.write_bytes(path.read_bytes()[:m[2] + m[3] // 2])
    with caplog.at_level(logging.WARNING, logger="pipeline.loader"):
        got, bad = read_counted(path, n)
    assert got == keys[:3] and bad.count == n - 3
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and name in lines[0] and f"{n - 3} sample(s) lost" in lines[0]


@pytest.mark.parametrize("length", [512, 100])
def test_garbage_between_members_loses_nothing(split, length, caplog):
    """A garbage block (or bytes that shift every later header off the 512-byte grid) between two
    members: the reader resyncs at the next valid header; today the rest of the shard is lost."""
    name, path, n = first_shard(split)
    keys = keys_of(path)
    at = header_of(path, ".cls", nth=5)
    raw = path.read_bytes()
    garbage = random.Random(length).randbytes(length)
    path.write_bytes(raw[:at] + garbage + raw[at:])
    with caplog.at_level(logging.WARNING, logger="pipeline.loader"):
        got, bad = read_counted(path, n)
    assert got == keys and bad.count == 0
    assert f"{name}: 0 sample(s) lost" in caplog.text and f"bad tar header at byte {at}" in caplog.text


def damage(raw: bytes, rng: random.Random, offsets: list[int]) -> bytes:
    """1-3 random byte changes (half of them inside a header block), then maybe a truncation."""
    out = bytearray(raw)
    for _ in range(rng.randint(1, 3)):
        at = rng.choice(offsets) + rng.randrange(512) if rng.random() < 0.5 else rng.randrange(len(out))
        out[at] ^= rng.randint(1, 255)
    if rng.random() < 0.3:
        del out[rng.randrange(len(out)):]
    return bytes(out)


def test_random_flips_and_truncations_never_raise_and_every_sample_is_accounted(split):
    rng = random.Random(20240601)
    sizes = schema.read_sizes(split)
    originals = {s: (split / s).read_bytes() for s in sizes}
    offsets = {s: [m[1] for m in members(split / s)] for s in sizes}
    lost = 0
    for case in range(200):
        shard = rng.choice(sorted(sizes))
        path = split / shard
        path.write_bytes(damage(originals[shard], rng, offsets[shard]))
        bad = BadSamples(1e9)
        delivered = sum(1 for _ in read_shard(path, bad, sizes[shard]))
        assert delivered + bad.count == sizes[shard], (case, shard)
        lost += bad.count
        path.write_bytes(originals[shard])
    assert lost > 50          # the damage did cost samples: the cases were not all harmless


def test_a_loader_epoch_over_damaged_shards_accounts_for_every_sample(split):
    rng = random.Random(7)
    sizes = schema.read_sizes(split)
    for shard in sorted(sizes)[::2]:          # every second shard damaged, one of them emptied
        path = split / shard
        path.write_bytes(damage(path.read_bytes(), rng, [m[1] for m in members(path)]))
    (split / sorted(sizes)[2]).write_bytes(b"")
    cfg = LoaderConfig(batch_size=8, workers=2, image_size=32, log_bad_every_s=0, shuffle_buffer=16)
    loader = ShardLoader(split, cfg)
    for epoch in range(2):
        planned, before = len(loader), loader.bad_samples
        batches = list(loader)
        assert len(batches) == planned and all(len(b["class_id"]) == 8 for b in batches)
        delivered = sum(int((~b["meta"].padding).sum()) for b in batches)
        assert delivered + loader.bad_samples - before == sum(sizes.values())
        assert loader.bad_samples - before >= sizes[sorted(sizes)[2]]
        # a damaged (or emptied) shard still finishes: resume accounting sees every shard done
        assert sorted(s for b in batches for s in b["meta"].shards_done) == sorted(sizes)
        assert loader.epoch == epoch + 1
    loader.close()


def test_a_worker_whose_only_shards_are_unreadable_still_fills_its_batches(split):
    """As many workers as shards need: a worker holding only an empty shard pads from the
    others (today: RuntimeError 'no readable sample')."""
    sizes = schema.read_sizes(split)
    keep = sorted(sizes)[:3]
    (split / keep[0]).write_bytes(b"")
    (split / keep[1]).unlink()
    cfg = LoaderConfig(batch_size=4, workers=3, image_size=32, log_bad_every_s=0, train=False)
    loader = ShardLoader(split, cfg, shards=keep)
    planned = len(loader)
    batches = list(loader)
    assert len(batches) == planned
    delivered = sum(int((~b["meta"].padding).sum()) for b in batches)
    assert delivered == sizes[keep[2]] and loader.bad_samples == sizes[keep[0]] + sizes[keep[1]]
    loader.close()


def test_a_flipped_byte_that_keeps_a_label_record_valid_is_not_detected(split):
    """What happens, precisely: tar checksums cover headers only and a shard carries no digest of
    its members' data, so a label value changed by one byte (still valid JSON, still in range)
    is delivered as that label, nothing counted lost; an id changed beyond the head's size is
    caught by the loss's range check, which stops the run naming it (README, What webtag survives)."""
    import json

    import torch

    from pretrain.losses import batch_targets

    name, path, n = first_shard(split)
    before = {s["__key__"]: s["labels"] for s in read_shard(path, BadSamples(0), n)}
    member = [m for m in members(path) if m[0].endswith("." + schema.LABELS_EXT)][2]
    raw = path.read_bytes()
    data = raw[member[2]:member[2] + member[3]]
    at = data.index(b'"label_ids":[') + len(b'"label_ids":[')
    old = data[at:at + 1]
    assert old.isdigit(), data
    new = b"1" if old != b"1" else b"2"
    patch(path, member[2] + at, new)
    after_records = list(read_shard(path, bad := BadSamples(0), n))
    after = {s["__key__"]: s["labels"] for s in after_records}
    key = member[0].rsplit("/", 1)[-1].split(".")[0]
    assert bad.count == 0 and list(after) == list(before)                 # not detected: all delivered
    changed = [k for k in before if before[k] != after[k]]
    assert changed == [next(k for k in before if k.endswith(key))]
    rec = json.loads(data[:at] + new + data[at + 1:])
    assert after[changed[0]]["label_ids"] == rec["label_ids"] != before[changed[0]]["label_ids"]

    # an id beyond the head: the loss's range check refuses the batch, naming the id
    ids = after[changed[0]]["label_ids"]
    batch = {"label_ids": torch.tensor(ids), "label_offsets": torch.tensor([0, len(ids)]),
             "label_weights": torch.ones(len(ids))}
    with pytest.raises(ValueError, match=f"label id {max(ids)} out of range"):
        batch_targets(batch, "weights", max(ids), "cpu")


@pytest.mark.parametrize("sampling", ["class", "sqrt"])
def test_a_shard_cut_short_by_a_full_disk_under_repeat_sampling_counts_each_lost_sample_once(split, sampling):
    """A shard truncated inside a member (what a full disk leaves while it is written) read with a
    repeat-factor sampler: its samples after the cut are counted lost once each, against the
    manifest (not once per planned copy), none of them is delivered, and the epoch keeps its
    planned batch count."""
    name, path, n = first_shard(split)
    lost_indices = {s["labels"]["index"] for s in read_shard(path, BadSamples(0), n)}
    cut_member = [m for m in members(path) if m[0].startswith(keys_of(path)[6])][0]
    path.write_bytes(path.read_bytes()[:cut_member[2] + cut_member[3] // 2])   # inside sample 6's data
    kept = {s["labels"]["index"] for s in read_shard(path, BadSamples(0), n)}
    lost_indices -= kept
    assert len(lost_indices) == n - 6
    cfg = LoaderConfig(batch_size=8, workers=2, image_size=32, log_bad_every_s=0, shuffle_buffer=16, sampling=sampling)
    loader = ShardLoader(split, cfg)
    try:
        for epoch in range(2):
            planned, before = len(loader), loader.bad_samples
            batches = list(loader)
            assert len(batches) == planned and all(len(b["class_id"]) == 8 for b in batches)
            assert loader.bad_samples - before == n - 6
            delivered = {int(i) for b in batches for i, pad in zip(b["index"], b["meta"].padding) if not pad}
            assert not delivered & lost_indices
            assert sum(int((~b["meta"].padding).sum()) for b in batches) > 0
    finally:
        loader.close()
