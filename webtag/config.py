"""Typed dataclass configs loaded from YAML, overridable with ``key=value`` on the command line.

Every component gets its own sub-config (a nested dataclass). Unknown keys and wrong types are
errors that name the key and list the valid ones, so a typo never silently falls back to a default.
Values are checked when a config is built: a dataclass whose ``__post_init__`` calls
``check(self, key=rule, ...)`` (rules ``at_least``, ``above``, ``between``, ``each``) refuses a
value a user can get wrong with ``loader.batch_size=0: must be >= 1`` (the full dotted key when
loaded through ``load_config``); a YAML syntax error names the file, line and column.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not match the dataclass schema."""


class InvalidValue(ConfigError):
    """A config value outside what its key allows; ``key`` is dotted from the config's root."""

    def __init__(self, key: str, value: Any, rule: str):
        super().__init__(f"{key}={_show(value)}: {rule}")
        self.key, self.value, self.rule = key, value, rule

    def under(self, section: str) -> "InvalidValue":
        return InvalidValue(f"{section}.{self.key}", self.value, self.rule) if section else self


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return str(value) if not isinstance(value, (list, tuple)) else "[" + ", ".join(_show(v) for v in value) + "]"


@dataclasses.dataclass(frozen=True)
class Rule:
    """A test of one config value and the words that say what it must be."""
    ok: typing.Callable[[Any], bool]
    text: str


def at_least(low: float) -> Rule:
    return Rule(lambda v: v >= low, f"must be >= {low}")


def above(low: float) -> Rule:
    return Rule(lambda v: v > low, f"must be > {low}")


def between(low: float, high: float, low_open: bool = False) -> Rule:
    """``[low, high]``, or ``(low, high]`` with ``low_open``."""
    return Rule(lambda v: (v > low if low_open else v >= low) and v <= high,
                f"must be in {'(' if low_open else '['}{low}, {high}]")


def each(rule: Rule, length: int | None = None) -> Rule:
    """Every item of a list obeys ``rule`` (and, with ``length``, the list has that many)."""
    return Rule(lambda v: (length is None or len(v) == length) and all(rule.ok(x) for x in v),
                (f"must be {length} values, each: " if length else "each value ") + rule.text)


def check(cfg: Any, **rules: Rule) -> None:
    """Raise InvalidValue for the first of ``cfg``'s fields (by keyword) whose value breaks its
    rule; None (an unset optional value) passes. Call it from a config's ``__post_init__``."""
    for name, rule in rules.items():
        value = getattr(cfg, name)
        if value is not None and not rule.ok(value):
            raise InvalidValue(name, value, rule.text)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {_type_name(tp)}")
    if origin is Literal:
        allowed = get_args(tp)
        if isinstance(value, bool):  # YAML 1.1 reads a bare no/off/yes/on as a boolean
            for word in (("no", "off", "false") if not value else ("yes", "on", "true")):
                if word in allowed:
                    value = word
                    break
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_rest) = get_args(tp) or (Any,)
        items = [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported config type {_type_name(tp)}")


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass ``cls`` from a nested dict, checking keys and types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' under ' + where if where else ''}: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _convert(value, hints[name], key)
    try:
        return cls(**kwargs)
    except InvalidValue as exc:   # from the dataclass's own checks: name the key from the root
        raise exc.under(where) from None


def to_dict(cfg: Any) -> Any:
    """The config as plain YAML-serialisable data."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {k} is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: cannot parse value: "
                          f"{getattr(exc, 'problem', None) or str(exc).splitlines()[0]}") from None
    return key, value


def load_config(cls: type[T], path: str | Path | None = None, overrides: typing.Iterable[str] = (),
                defaults: dict | None = None, section: str | None = None) -> T:
    """Load ``cls`` from an optional YAML file, then ``defaults`` (e.g. from CLI flags), then overrides.

    ``section``: ``cls`` is that section of a larger config (``loader`` of the training configs), so
    that a command taking only it reads the same ``section.key=value`` overrides (``key=value``
    too) and a whole training YAML (its ``section:`` mapping)."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            with open(path, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path}{_yaml_where(exc)}: not valid YAML: "
                              f"{getattr(exc, 'problem', None) or exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path}: cannot read it: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: the top level must be a mapping")
        data = loaded
        if section and isinstance(data.get(section), dict):
            data = data[section]
    for key, value in (defaults or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    for text in overrides:
        key, value = parse_override(text)
        if section and key.startswith(section + "."):
            key = key[len(section) + 1:]
        _set_dotted(data, key, value)
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        where = f" (from {path})" if path is not None else ""
        raise ConfigError(f"{exc}{where}") from None


def _yaml_where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""


def dump_config(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
