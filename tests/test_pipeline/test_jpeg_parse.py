"""pipeline/jpeg_parse.py: what ``--validate fast`` passes, the loader decodes. Every header byte of
a real photo (and of re-encoded variants: progressive, 4:4:4, greyscale, CMYK, restart markers)
flipped, and headers crafted with each fault libjpeg refuses."""
import io
import random
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from pipeline.images import BadImage, check_jpeg
from pipeline.loader import CpuAugment, LoaderConfig

PHOTO = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"   # a real photo, 512x600


def _decodes(data: bytes) -> bool:
    """Whether the loader's own decode (and Pillow's plain one) takes the data."""
    if not _pillow_decodes(data):
        return False
    aug = CpuAugment(LoaderConfig(batch_size=1, workers=0, image_size=32), random.Random(0))
    try:
        aug.into(data, np.empty((1, 32, 32, 3), np.uint8))
    except Exception:  # noqa: BLE001 - Pillow raises many types on data it cannot decode
        return False
    return True


def _variants():
    src = PHOTO.read_bytes()
    yield "photo", src
    img = Image.open(io.BytesIO(src)).convert("RGB").resize((64, 48))
    for name, im, kw in [("progressive", img, {"progressive": True}), ("444", img, {"subsampling": 0}),
                         ("grey", img.convert("L"), {}), ("cmyk", img.convert("CMYK"), {}),
                         ("restart", img, {"restart_marker_blocks": 2})]:
        out = io.BytesIO()
        im.save(out, "JPEG", quality=85, **kw)
        yield name, out.getvalue()


def _header_positions(data: bytes) -> list[int]:
    """Every byte before the first scan's data, and the 40 bytes around every later scan header."""
    first = data.index(b"\xff\xda")
    positions = set(range(2, first + 2 + int.from_bytes(data[first + 2: first + 4], "big")))
    at = first
    while (at := data.find(b"\xff\xda", at + 1)) >= 0:
        positions.update(range(max(2, at - 30), min(len(data) - 2, at + 12)))
    return sorted(positions)


def _passed_by_fast(data: bytes, values):
    """(position, value, changed data) of each header byte of ``data`` changed to each of
    ``values(old byte)`` that fast passes."""
    for pos in _header_positions(data):
        for value in values(data[pos]) - {data[pos]}:
            bad = _set(data, pos, value)
            try:
                check_jpeg(bad, "fast")
            except BadImage:
                continue
            yield pos, value, bad


def _pillow_decodes(data: bytes) -> bool:
    try:
        Image.open(io.BytesIO(data)).convert("RGB").load()
    except Exception:  # noqa: BLE001 - Pillow raises many types on data it cannot decode
        return False
    return True


@pytest.mark.parametrize("name,data", list(_variants()), ids=[n for n, _ in _variants()])
def test_whatever_fast_passes_the_loader_decodes(name, data):
    assert check_jpeg(data, "fast") == Image.open(io.BytesIO(data)).size
    passed = list(_passed_by_fast(data, lambda b: {b ^ 0xFF, b ^ 0x01, b ^ 0x10, 0x00, (b + 1) % 256, (b - 1) % 256}))
    undecodable = [(pos, data[pos], value) for pos, value, bad in passed if not _decodes(bad)]
    assert len(passed) > 100   # flips in comments, application data, table values still pass
    assert not undecodable, f"{name}: fast passed {len(undecodable)} undecodable flips, e.g. {undecodable[:5]}"


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_every_value_of_every_header_byte_of_a_small_jpeg(progressive):
    """All 255 other values of each header byte (and of the bytes around later scan headers)."""
    out = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize((48, 32)).save(out, "JPEG", quality=85, progressive=progressive)
    data = out.getvalue()
    undecodable = [(pos, data[pos], value) for pos, value, bad in _passed_by_fast(data, lambda b: set(range(256)))
                   if not _pillow_decodes(bad)]
    assert not undecodable, f"fast passed {len(undecodable)} undecodable values, e.g. {undecodable[:5]}"


def _segments(data: bytes) -> dict[int, int]:
    """Marker -> position of its first segment, up to the first scan."""
    out, pos = {}, 2
    while True:
        marker = data[pos + 1]
        out.setdefault(marker, pos)
        if marker == 0xDA:
            return out
        pos += 2 + int.from_bytes(data[pos + 2: pos + 4], "big")


def _set(data: bytes, pos: int, value: int) -> bytes:
    return data[:pos] + bytes([value]) + data[pos + 1:]


def _no_prefix_code(data: bytes, dht: int) -> bytes:
    """The first Huffman table with two 1-bit codes (the same number of codes in all)."""
    counts = bytearray(data[dht + 5: dht + 21])
    k = next(k for k in range(1, 16) if counts[k] >= 2)
    counts[0] += 2
    counts[k] -= 2
    return data[:dht + 5] + bytes(counts) + data[dht + 21:]


def _crafted():
    """(what, data) of headers libjpeg refuses, each made from a good JPEG."""
    out = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize((64, 48)).save(out, "JPEG", quality=85)
    good = out.getvalue()
    seg = _segments(good)
    sof, dht, dqt, sos = seg[0xC0], seg[0xC4], seg[0xDB], seg[0xDA]
    prog = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize((64, 48)).save(prog, "JPEG", quality=85, progressive=True)
    prog = prog.getvalue()
    psos = _segments(prog)[0xDA]
    pns = prog[psos + 4]
    yield "12-bit samples", _set(good, sof + 4, 12), "of 12 bits"
    yield "a lossless process", _set(good, sof + 1, 0xC3), "lossless"
    yield "sampling factor 0", _set(good, sof + 11, 0x02), "sampling 0x2"
    yield "quantisation table 5 in the frame", _set(good, sof + 12, 5), "quantisation table 5"
    yield "a quantisation table with id 7", _set(good, dqt + 4, 0x07), "bad quantisation table"
    yield "a Huffman table of class 2", _set(good, dht + 4, 0x20), "bad Huffman table"
    yield "a Huffman table that is no prefix code", _no_prefix_code(good, dht), "no prefix code"
    yield "a scan component not in the frame", _set(good, sos + 5, 9), "not in the frame"
    yield "a scan using Huffman table 3", _set(good, sos + 6, 0x33), "is not defined"
    yield "arithmetic conditioning (DAC) in a Huffman-coded JPEG", _set(good, 3, 0xCC), "conditioning"
    yield "an end marker before any scan", good[:sos] + b"\xff\xd9", "before any scan"
    yield "a progressive DC scan that ends at 5", _set(prog, psos + 6 + 2 * pns, 5), "progressive scan"


@pytest.mark.parametrize("what,data,why", list(_crafted()), ids=[w for w, _, _ in _crafted()])
def test_fast_refuses_headers_libjpeg_refuses(what, data, why):
    assert not _decodes(data), f"{what}: the loader decodes it after all"
    with pytest.raises(BadImage, match=why) as err:
        check_jpeg(data, "fast")
    assert err.value.kind == "bad_image"
    with pytest.raises(BadImage):   # full decodes: libjpeg refuses them itself
        check_jpeg(data, "full")


def test_fast_passes_huffman_coded_jpegs_only():
    """Arithmetic-coded JPEGs (rare on the web) are refused by fast: Pillow's libjpeg decodes them,
    but fast does not check their conditioning tables; full decodes them to decide."""
    out = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize((64, 48)).save(out, "JPEG", quality=85)
    good = out.getvalue()
    sof = _segments(good)[0xC0]
    arithmetic = _set(good, sof + 1, 0xC9)
    with pytest.raises(BadImage, match="an arithmetic-coded JPEG"):
        check_jpeg(arithmetic, "fast")
    assert check_jpeg(arithmetic, "full") == (64, 48)   # decoded, so judged by libjpeg
    assert check_jpeg(_set(good, sof + 1, 0xC1), "fast") == (64, 48)   # extended sequential, 8-bit


def test_pillows_pixel_limit_as_the_user_set_it(monkeypatch):
    out = io.BytesIO()
    Image.new("RGB", (64, 48)).save(out, "JPEG")
    data = out.getvalue()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(BadImage, match="above Pillow's limit of 1000 pixels"):
        check_jpeg(data, "fast")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)   # lifted: no limit
    assert check_jpeg(data, "fast") == (64, 48)
