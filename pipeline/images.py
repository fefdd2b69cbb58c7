"""Checking and (optionally) shrinking JPEGs before they go into shards; re-encoding the PNG,
GIF and WebP files that web crawls save as ``.jpg`` (``as_jpeg``).

How a JPEG is checked (``validate``, the shard writer's ``--validate``):
- ``full``: the structural parse of ``fast`` and a decode (at 1/8 scale through libjpeg's DCT
  scaling: every entropy-coded byte is still read), so undecodable data is caught too; the default.
- ``fast``: a structural parse without decoding (``jpeg_structure``): the marker segments and
  their lengths, a frame header with a size before the first scan, every marker inside the
  entropy-coded data a legal one, and the end-of-image marker reached. It catches truncated files
  and bad or misplaced markers; corrupt Huffman bits between valid markers pass (libjpeg decodes
  them as grey blocks with a warning, so the loader can still decode the image).
- ``none``: only the JPEG signature.
"""
from __future__ import annotations

import io
import warnings

from PIL import Image

JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
VALIDATE_MODES = ("full", "fast", "none")
# in entropy-coded data a 0xFF is followed by 0x00 (a stuffed byte), 0xFF (fill) or RST0-7; any
# other byte starts a marker, which ends the scan
_IN_SCAN = frozenset([0x00, 0xFF, *range(0xD0, 0xD8)])
_SOF = frozenset([0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF])
# markers that may appear between the segments of a frame: tables, restart interval, comments,
# application data, the scans themselves and the end
_SEGMENT = _SOF | {0xC4, 0xCC, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xFE} | set(range(0xE0, 0xF0))


class BadImage(ValueError):
    """An image that must not go into a shard; ``kind`` names the reason for the report."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def jpeg_structure(data: bytes) -> tuple[int, int]:
    """(width, height) of a structurally complete JPEG (``validate=fast``), else BadImage:
    ``truncated_image`` when the data ends before the end-of-image marker, ``bad_image`` for a
    bad, misplaced or overlong marker segment. ``data`` starts with the JPEG signature."""
    n, pos, size = len(data), 2, None
    while True:
        if pos + 2 > n:
            raise BadImage("truncated_image", f"JPEG ends at byte {n} before its end marker (truncated file)")
        if data[pos] != 0xFF:
            raise BadImage("bad_image", f"JPEG: no marker at byte {pos} (0x{data[pos]:02x})")
        while pos + 1 < n and data[pos + 1] == 0xFF:   # fill bytes before a marker
            pos += 1
        if pos + 2 > n:
            raise BadImage("truncated_image", f"JPEG ends at byte {n} before its end marker (truncated file)")
        marker = data[pos + 1]
        if marker == 0xD9:
            if size is None:
                raise BadImage("bad_image", "JPEG: end marker before any frame header")
            return size
        if marker not in _SEGMENT:
            raise BadImage("bad_image", f"JPEG: bad marker 0xff{marker:02x} at byte {pos}")
        if pos + 4 > n:
            raise BadImage("truncated_image", f"JPEG ends at byte {n} inside a marker (truncated file)")
        length = (data[pos + 2] << 8) | data[pos + 3]
        end = pos + 2 + length
        if length < 2 or end > n:
            if end > n:
                raise BadImage("truncated_image", f"JPEG segment 0xff{marker:02x} at byte {pos} runs past "
                                                  f"the end ({n} bytes; truncated file)")
            raise BadImage("bad_image", f"JPEG: segment 0xff{marker:02x} at byte {pos} has length {length}")
        if marker in _SOF:
            if length < 8:
                raise BadImage("bad_image", f"JPEG: frame header at byte {pos} too short")
            h, w = (data[pos + 5] << 8) | data[pos + 6], (data[pos + 7] << 8) | data[pos + 8]
            if w == 0 or h == 0 or data[pos + 9] not in (1, 3, 4):
                raise BadImage("bad_image", f"JPEG: frame header at byte {pos}: {w}x{h}, "
                                            f"{data[pos + 9]} components")
            size = (w, h)
        if marker != 0xDA:
            pos = end
            continue
        if size is None:
            raise BadImage("bad_image", f"JPEG: scan at byte {pos} before any frame header")
        pos = _scan_end(data, end)


def _scan_end(data: bytes, pos: int) -> int:
    """The position of the marker that ends the entropy-coded data starting at ``pos``."""
    find, n = data.find, len(data)
    while True:
        pos = find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            raise BadImage("truncated_image", f"JPEG ends at byte {n} inside a scan (truncated file)")
        nxt = data[pos + 1]
        if nxt not in _IN_SCAN:
            return pos
        pos += 2 if nxt != 0xFF else 1


def check_jpeg(data: bytes, validate: str = "full") -> tuple[int, int] | None:
    """Raise BadImage unless ``data`` is a JPEG that passes ``validate`` (module docstring);
    return its (width, height) (None for ``validate=none``).

    ``full`` decodes at 1/8 scale (libjpeg DCT scaling via ``draft``): every entropy-coded byte is
    still read, so truncation and corruption are caught at a fraction of a full decode's cost."""
    if validate not in VALIDATE_MODES:
        raise ValueError(f"validate must be one of {', '.join(VALIDATE_MODES)}, not {validate!r}")
    if not data:
        raise BadImage("empty_image", "file is empty")
    if not data.startswith(JPEG_SOI):
        kind = "not_image"
        head = data[:12]
        what = ("PNG" if head.startswith(b"\x89PNG") else "GIF" if head.startswith(b"GIF8")
                else "WebP" if head[8:12] == b"WEBP" else "HTML" if head.lstrip()[:1] == b"<" else "unknown")
        raise BadImage(kind, f"not a JPEG ({what} data)")
    if validate == "none":
        return None
    size = jpeg_structure(data)   # full too: libjpeg ends a scan at a bad marker without an error
    if validate == "fast":
        return size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # PIL warns, not raises, on some corrupt data
            img = Image.open(io.BytesIO(data))
            size = img.size
            img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            img.load()
    except BadImage:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on corrupt data
        raise BadImage("bad_image", f"cannot decode: {exc}") from None
    return size


def as_jpeg(data: bytes, quality: int = 90, validate: str = "full") -> tuple[bytes, bool]:
    """``(jpeg, reencoded)``: a JPEG as it is (after ``check_jpeg(data, validate)``), or another format PIL decodes
    (PNG, GIF: its first frame, WebP, BMP, TIFF ...) re-encoded as an RGB JPEG of ``quality``,
    transparency composited on white. What decodes as nothing raises BadImage (``not_image`` for
    an unknown format or an HTML page, ``bad_image`` for a broken file of a known format)."""
    if not data:
        raise BadImage("empty_image", "file is empty")
    if data.startswith(JPEG_SOI):
        check_jpeg(data, validate)
        return data, False
    head = data[:12]
    what = ("PNG" if head.startswith(b"\x89PNG") else "GIF" if head.startswith(b"GIF8")
            else "WebP" if head[8:12] == b"WEBP" else "HTML" if head.lstrip()[:1] == b"<" else None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            img = Image.open(io.BytesIO(data))
            img.seek(0)   # a GIF's (or animated WebP's) first frame
            img.load()
            rgb = _on_white(img)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on corrupt or unknown data
        if what in (None, "HTML") and isinstance(exc, Image.UnidentifiedImageError):
            raise BadImage("not_image", f"not an image ({what or 'unknown'} data)") from None
        raise BadImage("bad_image", f"cannot decode this {what or 'image'}: {exc}") from None
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=quality)
    return out.getvalue(), True


def _on_white(img: Image.Image) -> Image.Image:
    """RGB, with any transparency (alpha, a palette's transparent index) composited on white."""
    if img.mode in ("P", "PA") or (img.mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def resize_shorter(data: bytes, shorter: int, quality: int = 90) -> bytes:
    """Re-encode so the shorter side is ``shorter`` pixels; smaller images are kept as they are."""
    img = Image.open(io.BytesIO(data))
    w, h = img.size
    if min(w, h) <= shorter:
        return data
    scale = shorter / min(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img.draft("RGB", size)   # let libjpeg shrink by a power of two first
    img = img.convert("RGB").resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=False)
    return out.getvalue()
