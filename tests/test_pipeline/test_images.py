"""pipeline/images.py: the three JPEG validation modes of the shard writer (issue 19)."""
import io

import numpy as np
import pytest
from PIL import Image

from pipeline.images import BadImage, as_jpeg, check_jpeg


def _jpeg(w=96, h=64, progressive=False, restart=False) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    out = io.BytesIO()
    extra = {"restart_marker_blocks": 2} if restart else {}
    img.save(out, "JPEG", quality=90, progressive=progressive, **extra)
    return out.getvalue()


def _scan_start(data: bytes) -> int:
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2: sos + 4], "big")


@pytest.mark.parametrize("kw", [{}, {"progressive": True}, {"restart": True}])
def test_good_jpegs_pass_every_mode_with_their_size(kw):
    data = _jpeg(**kw)
    for mode in ("full", "fast"):
        assert check_jpeg(data, mode) == (96, 64)
    assert check_jpeg(data, "none") is None
    assert as_jpeg(data, validate="fast") == (data, False)


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_truncated_jpeg_is_refused(mode):
    data = _jpeg()
    for cut in (len(data) - 2, _scan_start(data) + 40, 200):
        with pytest.raises(BadImage) as err:
            check_jpeg(data[:cut], mode)
        assert err.value.kind == "truncated_image"


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_bad_marker_in_the_scan_is_refused(mode):
    data = bytearray(_jpeg())
    at = _scan_start(data) + 100
    data[at:at + 2] = b"\xff\x01"   # a reserved marker inside the entropy-coded data
    with pytest.raises(BadImage) as err:
        check_jpeg(bytes(data), mode)
    assert err.value.kind == "bad_image"


def test_fast_refuses_bad_headers_that_none_lets_through():
    data = _jpeg()
    no_frame = data.replace(b"\xff\xc0", b"\xff\xef", 1)        # the frame header renamed APP15
    bad_length = bytearray(data)
    bad_length[4:6] = b"\xff\xff"                                 # APP0 claims 64 KB
    for bad in (no_frame, bytes(bad_length)):
        with pytest.raises(BadImage):
            check_jpeg(bad, "fast")
        assert check_jpeg(bad, "none") is None
    with pytest.raises(BadImage, match="not a JPEG"):
        check_jpeg(b"\x89PNG\r\n\x1a\n" + data, "none")
    with pytest.raises(ValueError, match="validate must be one of"):
        check_jpeg(data, "quick")
