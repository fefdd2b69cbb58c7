"""Accounting of bad input: every problem is counted by kind with the offending file named.

With ``on_error="fail"`` the first problem raises :class:`InputError` instead, with a message that
names the file and the record (line or row).
"""
from __future__ import annotations

from webtag.problems import InputError, Problems as _Problems

__all__ = ["KINDS", "FILE_KINDS", "InputError", "Problems"]

# Kinds of problem, in report order, with what they mean.
KINDS = {
    "missing_json": "metadata JSON file not found (images kept, without text)",
    "bad_json": "malformed or truncated metadata JSON (readable records salvaged)",
    "non_utf8": "metadata JSON with bytes that are not UTF-8 (decoded with replacement)",
    "row_out_of_range": "meta-list row past the end of its JSON list (image kept, without text)",
    "bad_record": "metadata record that is not a JSON object (image kept, without text)",
    "empty_text": "image whose title, description and tags are all empty or null",
    "bad_list_line": "malformed line in a file list or meta list (image dropped)",
    "list_mismatch": "file list and meta list of different lengths",
    "unknown_class": "class id outside info/synsets.txt (image dropped)",
    "missing_image": "image file listed but not on disk (image dropped)",
    "duplicate_image": "image path listed more than once (later copies dropped)",
    "missing_caption": "web-data sample without its .txt caption (image dropped)",
    "no_label": "web-data sample without a label and without a class name in its text (dropped)",
}

# Problems of a whole file: counted once per file, however many parts or reads meet it.
FILE_KINDS = frozenset({"missing_json", "bad_json", "non_utf8"})


class Problems(_Problems):
    """Bad input of the text-mining stage."""

    def __init__(self, on_error: str = "skip", **kw):
        super().__init__(KINDS, FILE_KINDS, on_error, **kw)
