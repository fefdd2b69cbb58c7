from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from webtag.config import ConfigError, dump_config, load_config, parse_override


@dataclass
class Inner:
    size: int = 3
    rate: float = 0.5
    name: Optional[str] = None
    mode: Literal["a", "b"] = "a"
    items: list[str] = field(default_factory=lambda: ["x"])


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    flag: bool = False


def test_defaults_file_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("inner:\n  size: 7\n  items: [p, q]\nflag: true\n")
    cfg = load_config(Outer, f, ["inner.rate=2", "inner.name=abc", "inner.mode=b"])
    assert cfg.inner.size == 7 and cfg.inner.rate == 2.0 and isinstance(cfg.inner.rate, float)
    assert cfg.inner.name == "abc" and cfg.inner.mode == "b" and cfg.inner.items == ["p", "q"]
    assert cfg.flag is True
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(cfg))
    assert load_config(Outer, again) == cfg


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as exc:
        load_config(Outer, None, ["inner.sise=3"])
    msg = str(exc.value)
    assert "inner.sise" in msg and "size" in msg and "rate" in msg


def test_wrong_types_are_errors():
    with pytest.raises(ConfigError, match="inner.size: expected an integer"):
        load_config(Outer, None, ["inner.size=big"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config(Outer, None, ["inner.mode=c"])
    with pytest.raises(ConfigError, match="true/false"):
        load_config(Outer, None, ["flag=3"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("novalue")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "nope.yaml")


def test_yaml_no_reads_as_the_literal_word(tmp_path):
    @dataclass
    class Precision:
        mixed_precision: Literal["no", "bf16"] = "bf16"
        switch: Literal["on", "off"] = "on"

    f = tmp_path / "p.yaml"
    f.write_text("mixed_precision: no\nswitch: off\n")   # YAML 1.1 booleans
    cfg = load_config(Precision, f)
    assert cfg.mixed_precision == "no" and cfg.switch == "off"
    with pytest.raises(ConfigError, match="not one of"):
        load_config(Precision, None, ["mixed_precision=yes"])
