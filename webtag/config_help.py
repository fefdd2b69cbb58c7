"""Every key of a config dataclass with its type, default and one-line description (``--help``).

The description of a field is its ``metadata["help"]`` if it has one, else the comment written
beside the field in its class's source (with the comment-only lines right under it, which
continue it), as the configs of this project document their keys::

    lr: float = 0.1                       # for the effective batch (per device x devices x accumulation)

Inherited fields take the comment of the class that declares them; a subclass's default (e.g.
finetuning's ``optim.lr``) is the one shown, read from a default instance.
"""
from __future__ import annotations

import dataclasses
import inspect
import io
import re
import textwrap
import tokenize
from typing import Any

from webtag.config import _show, to_dict

_FIELD = re.compile(r"^    (\w+)\s*:")


def _source_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment beside it in ``cls``'s own source (continuation lines joined)."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):   # no source (a frozen or dynamically made class)
        return {}
    comments: dict[int, tuple[str, bool]] = {}   # row -> (text, the line holds only the comment)
    lines = src.splitlines()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT:
                row = tok.start[0]
                only = not lines[row - 1][: tok.start[1]].strip()
                comments[row] = (tok.string.lstrip("#").strip(), only)
    except (tokenize.TokenError, IndentationError):
        return {}
    out = {}
    for row, line in enumerate(lines, start=1):
        m = _FIELD.match(line)
        if not m or row not in comments or comments[row][1]:
            continue
        text = [comments[row][0]]
        nxt = row + 1
        while nxt in comments and comments[nxt][1]:
            text.append(comments[nxt][0])
            nxt += 1
        out[m.group(1)] = " ".join(t for t in text if t)
    return out


def field_help(cls: type) -> dict[str, str]:
    """Field name -> its one-line description (metadata ``help``, else its source comment)."""
    found: dict[str, str] = {}
    for klass in reversed([c for c in cls.__mro__ if dataclasses.is_dataclass(c)]):
        found.update(_source_comments(klass))
    for f in dataclasses.fields(cls):
        if f.metadata.get("help"):
            found[f.name] = str(f.metadata["help"])
    return found


def config_keys(cls: type, instance: Any = None, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) of every leaf key of ``cls``, in field order."""
    instance = cls() if instance is None else instance
    helps = field_help(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        value = getattr(instance, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            rows += config_keys(type(value), value, key + ".")
            continue
        tp = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        rows.append((key, tp.replace("typing.", ""), _show(to_dict(value)), helps.get(f.name, "")))
    return rows


def format_keys(cls: type, width: int = 100) -> str:
    """The keys of ``cls`` as ``--help`` lists them: one per key, its description wrapped under it."""
    lines = [f"config keys (--config YAML, or key=value on the command line; {len(config_keys(cls))} keys):"]
    for key, tp, default, text in config_keys(cls):
        lines.append(f"  {key} ({tp}, default {default})")
        if text:
            lines += textwrap.wrap(text, width=width, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)
