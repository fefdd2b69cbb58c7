"""The structural JPEG check of the shard writer's ``--validate fast``: everything about a JPEG that
decides whether libjpeg (through Pillow, as the loader decodes) can decode it, read without
decoding.

- the marker segments and their lengths, every marker one that libjpeg knows, one frame header
  before the first scan, at least one scan, every marker inside the entropy-coded data a legal
  one (stuffed bytes, fill bytes, restarts), the end-of-image marker reached: truncated files and
  bad markers;
- the headers' contents, as libjpeg checks them before it decodes (its fatal errors): the frame's
  process (Huffman-coded baseline, extended or progressive, 8-bit samples; arithmetic-coded,
  lossless and hierarchical JPEGs are refused, rare on the web: ``full`` decodes those to decide),
  its size (not above Pillow's decompression-bomb limit), 1, 3 or 4 components with sampling
  factors 1-4 in integral ratios and quantisation tables 0-3; no arithmetic-coding conditioning
  (DAC) segment; quantisation tables (8 or 16 bits, ids 0-3, lengths that add up); Huffman tables
  (class and id, at most 256 codes that form a prefix code, DC symbols <= 15); restart intervals;
  each scan's components (in the frame, none twice, at most 10 blocks per interleaved MCU), its
  tables defined before it, and a progressive scan's spectral selection and successive
  approximation.

What it cannot see: corrupt Huffman-coded bits between valid markers. libjpeg decodes those with a
warning (grey or smeared blocks), which Pillow does not raise, so the loader still decodes the
image (``full``, which decodes, passes them too).
Checked by flipping every header byte of real photos (tests/test_pipeline/test_jpeg_parse.py):
whatever this check passes, Pillow decodes.

Why by hand: no library parses a JPEG's headers without decoding it; a decode at 1/8 scale
(``full``) reads every entropy-coded byte and costs about what a full decode costs on real photos
(the shard writer with ``full``: 658-679 images per CPU-second against 709-728 for a plain PIL
decode loop), with this parse 2658-2983 (bench/loader.py --images, 2026-12-04).
"""
from __future__ import annotations

from operator import mul

from PIL import Image

# in entropy-coded data a 0xFF is followed by 0x00 (a stuffed byte), 0xFF (fill) or RST0-7; any
# other byte starts a marker, which ends the scan
_IN_SCAN = frozenset([0x00, 0xFF, *range(0xD0, 0xD8)])
SOF_HUFFMAN = frozenset([0xC0, 0xC1, 0xC2])   # baseline, extended sequential, progressive
SOF_OTHER = frozenset([0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF])
_SOF = SOF_HUFFMAN | SOF_OTHER
DHT, DAC, SOS, DQT, DNL, DRI, COM = 0xC4, 0xCC, 0xDA, 0xDB, 0xDC, 0xDD, 0xFE
# markers libjpeg reads as segments: frames, tables, scans, the restart interval, DNL (skipped),
# comments and application data (DHP and EXP, hierarchical, are unknown markers to it)
_SEGMENT = _SOF | {DHT, DAC, SOS, DQT, DNL, DRI, COM} | set(range(0xE0, 0xF0))
_KRAFT = tuple(1 << (15 - k) for k in range(16))   # 2^16 x 2^-(code length)
PROCESS = {0xC3: "a lossless", 0xC9: "an arithmetic-coded", 0xCA: "an arithmetic-coded progressive",
           0xCB: "an arithmetic-coded lossless"}


class BadImage(ValueError):
    """An image that must not go into a shard; ``kind`` names the reason for the report."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class _Where:
    """Names a segment in a message ("JPEG: segment 0xffc0 at byte 230"), formatted only then."""
    __slots__ = ("marker", "pos")

    def __init__(self, marker: int, pos: int):
        self.marker, self.pos = marker, pos

    def __format__(self, spec: str) -> str:
        return f"JPEG: segment 0xff{self.marker:02x} at byte {self.pos}"


class _Frame:
    """What the scans need from the frame header and the tables before them."""

    def __init__(self, marker: int, size: tuple[int, int], components: dict[int, tuple[int, int, int]]):
        self.progressive = marker == 0xC2
        self.size = size
        self.components = components   # component id -> (h, v, quantisation table)


def jpeg_structure(data: bytes, headers: bool = True) -> tuple[int, int]:
    """(width, height) of a JPEG that libjpeg can decode as far as can be told without decoding
    (module docstring), else BadImage: ``truncated_image`` when the data ends before the
    end-of-image marker, ``bad_image`` otherwise. ``data`` starts with the JPEG signature.

    ``headers=False`` (``validate=full``, which decodes next and lets libjpeg judge the headers):
    the structure only, with the frame's size and components, any process."""
    n, pos = len(data), 2
    frame, scans = None, 0
    quant: set[int] = set()
    huff: set[tuple[int, int]] = set()   # (0 DC | 1 AC, id)
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
            if frame is None or not scans:
                raise BadImage("bad_image", f"JPEG: end marker at byte {pos} before any "
                                        f"{'frame header' if frame is None else 'scan'}")
            return frame.size
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
        if marker >= 0xE0:   # application data, comments: nothing libjpeg checks
            pos = end
            continue
        body = data[pos + 4: end]
        where = _Where(marker, pos)
        if not headers:
            if marker in _SOF:
                frame = _frame_size(marker, body, where)
        elif marker in _SOF:
            if frame is not None:
                raise BadImage("bad_image", f"{where}: a second frame header")
            frame = _frame(marker, body, where)
        elif marker == DQT:
            _quant_tables(body, quant, where)
        elif marker == DHT:
            _huffman_tables(body, huff, where)
        elif marker == DAC:   # arithmetic conditioning, which libjpeg parses and checks
            raise BadImage("bad_image", f"{where}: arithmetic-coding conditioning in a Huffman-coded JPEG")
        elif marker == DRI and length != 4:
            raise BadImage("bad_image", f"{where}: restart interval of length {length}, not 4")
        if marker != SOS:
            pos = end
            continue
        if frame is None:
            raise BadImage("bad_image", f"JPEG: scan at byte {pos} before any frame header")
        if headers:
            _scan_header(body, frame, quant, huff, where)
        scans += 1
        pos = _scan_end(data, end)


def _frame_size(marker: int, body: bytes, where: _Where) -> _Frame:
    """The frame's size and component count, checked; the rest left to the decoder."""
    if len(body) < 6:
        raise BadImage("bad_image", f"{where}: frame header too short")
    h, w, nc = (body[1] << 8) | body[2], (body[3] << 8) | body[4], body[5]
    if w == 0 or h == 0 or nc not in (1, 3, 4):
        raise BadImage("bad_image", f"{where}: {w}x{h}, {nc} components")
    return _Frame(marker, (w, h), {})


def _frame(marker: int, body: bytes, where: _Where) -> _Frame:
    if marker in SOF_OTHER:
        what = PROCESS.get(marker, "a hierarchical")
        raise BadImage("bad_image", f"{where}: {what} JPEG (fast passes Huffman-coded ones only)")
    (w, h), precision, nc = _frame_size(marker, body, where).size, body[0], body[5]
    if precision != 8:
        raise BadImage("bad_image", f"{where}: {w}x{h}, {nc} components of {precision} bits")
    limit = Image.MAX_IMAGE_PIXELS   # None: the user lifted Pillow's limit
    if limit and w * h > limit:
        raise BadImage("bad_image", f"{where}: {w}x{h} is above Pillow's limit of {limit} pixels")
    if len(body) != 6 + 3 * nc:
        raise BadImage("bad_image", f"{where}: frame header of {len(body) + 2} bytes for {nc} components")
    comps: dict[int, tuple[int, int, int]] = {}
    for i in range(nc):
        cid, hv, tq = body[6 + 3 * i: 9 + 3 * i]
        hs, vs = hv >> 4, hv & 15
        if not (1 <= hs <= 4 and 1 <= vs <= 4) or tq > 3:
            raise BadImage("bad_image", f"{where}: component {cid}: sampling {hs}x{vs}, quantisation table {tq}")
        comps.setdefault(cid, (hs, vs, tq))
    h_max, v_max = max(c[0] for c in comps.values()), max(c[1] for c in comps.values())
    if any(h_max % hs or v_max % vs for hs, vs, _ in comps.values()):
        raise BadImage("bad_image", f"{where}: sampling factors in a non-integral ratio")
    return _Frame(marker, (w, h), comps)


def _quant_tables(body: bytes, quant: set, where: _Where) -> None:
    i = 0
    while i < len(body):
        pq, tq = body[i] >> 4, body[i] & 15
        size = 64 * (pq + 1)
        if pq > 1 or tq > 3 or i + 1 + size > len(body):
            raise BadImage("bad_image", f"{where}: bad quantisation table (precision {pq}, id {tq})")
        quant.add(tq)
        i += 1 + size


def _huffman_tables(body: bytes, huff: set, where: _Where) -> None:
    i = 0
    while i < len(body):
        tc, th = body[i] >> 4, body[i] & 15
        counts = body[i + 1: i + 17]
        total = sum(counts)
        if tc > 1 or th > 3 or len(counts) < 16 or total > 256 or i + 17 + total > len(body):
            raise BadImage("bad_image", f"{where}: bad Huffman table (class {tc}, id {th})")
        # libjpeg's test, that the codes of each length stay below the all-ones code, is Kraft's
        # inequality held strictly: sum of counts[k] * 2^-(k+1) < 1
        if sum(map(mul, counts, _KRAFT)) >= 1 << 16:
            raise BadImage("bad_image", f"{where}: Huffman table (class {tc}, id {th}) is no prefix code")
        if tc == 0 and max(body[i + 17: i + 17 + total], default=0) > 15:
            raise BadImage("bad_image", f"{where}: DC Huffman table {th} with a symbol above 15")
        huff.add((tc, th))
        i += 17 + total


def _scan_header(body: bytes, frame: _Frame, quant: set, huff: set, where: _Where) -> None:
    ns = body[0] if body else 0
    if not 1 <= ns <= 4 or len(body) != 4 + 2 * ns:
        raise BadImage("bad_image", f"{where}: scan header of {len(body) + 2} bytes for {ns} components")
    ss, se, ah, al = body[1 + 2 * ns], body[2 + 2 * ns], body[3 + 2 * ns] >> 4, body[3 + 2 * ns] & 15
    if frame.progressive:
        dc = ss == 0
        bad = (se != 0) if dc else (ss > se or se > 63 or ns != 1)
        if bad or (ah != 0 and al != ah - 1) or al > 13:
            raise BadImage("bad_image", f"{where}: progressive scan {ss}-{se}, bits {ah}/{al}")
        uses = [0] if dc and ah == 0 else [] if dc else [1]   # DC first scans, AC scans
    else:
        uses = [0, 1]
    seen, blocks = set(), 0
    for i in range(ns):
        cid, tables = body[1 + 2 * i], body[2 + 2 * i]
        if cid not in frame.components or cid in seen:
            raise BadImage("bad_image", f"{where}: component {cid} is not in the frame or twice in the scan")
        seen.add(cid)
        hs, vs, tq = frame.components[cid]
        blocks += hs * vs
        if tq not in quant:
            raise BadImage("bad_image", f"{where}: component {cid}'s quantisation table {tq} is not defined")
        for cls in uses:
            tid = tables >> 4 if cls == 0 else tables & 15
            if (cls, tid) not in huff:
                raise BadImage("bad_image", f"{where}: component {cid}'s {'DC' if cls == 0 else 'AC'} "
                                        f"Huffman table {tid} is not defined")
    if ns > 1 and blocks > 10:
        raise BadImage("bad_image", f"{where}: {blocks} blocks in an MCU (at most 10)")


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
