"""Checking and (optionally) shrinking JPEGs before they go into shards; re-encoding the PNG,
GIF and WebP files that web crawls save as ``.jpg`` (``as_jpeg``).

How a JPEG is checked (``validate``, the shard writer's ``--validate``):
- ``full``: the structural parse of ``fast`` (without its header checks: the decode judges the
  headers) and a decode (at 1/8 scale through libjpeg's DCT scaling: every entropy-coded byte is
  still read): libjpeg itself judges the headers (no gap in ``fast``'s model of them) and
  arithmetic-coded JPEGs are kept; ~4x the CPU of ``fast`` on photos. Damaged entropy-coded data
  passes both: libjpeg decodes it with a warning, which Pillow does not raise.
- ``fast``: a structural parse without decoding (``jpeg_parse.jpeg_structure``): the marker
  segments and their lengths, every marker inside the entropy-coded data a legal one, the
  end-of-image marker reached, and the headers' contents that libjpeg checks before it decodes
  (the frame's process, size, components and sampling; the quantisation and Huffman tables; each
  scan's components, tables and progression). It catches truncated files and bad markers and
  headers; corrupt Huffman bits between valid markers pass (libjpeg decodes them as grey blocks
  with a warning, so the loader can still decode the image). The shard writer's default.
- ``none``: only the JPEG signature.
"""
from __future__ import annotations

import io
import warnings

from PIL import Image

from .jpeg_parse import BadImage, jpeg_structure

JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
VALIDATE_MODES = ("full", "fast", "none")


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
    # full too, the structure only (the decode judges the headers): libjpeg ends a scan at a bad
    # marker without an error
    size = jpeg_structure(data, headers=validate == "fast")
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
