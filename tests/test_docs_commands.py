"""The README's "WebVision protocol" commands as written: every config file they (or any part of
README.md and docs/) name exists, every ``python -m STAGE COMMAND`` is a command whose ``--help``
lists each option used, and the ``key=value`` overrides of the training commands load into their
config with the YAML given."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO
from finetune.config import FinetuneConfig
from pretrain.config import PretrainConfig
from webtag.config import load_config

CONFIG_PATH = re.compile(r"(?<![\w./-])configs/[\w./-]+\.yaml")
TRAIN_CONFIG = {"pretrain": PretrainConfig, "finetune": FinetuneConfig}


def section(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def commands(text: str) -> list[list[str]]:
    """The command lines of the bash blocks (continuations joined, comments and ``...`` lines out)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line and "..." not in line:
                out.append(shlex.split(line))
    return out


def named_files(name: str) -> list[str]:
    """``configs/x/stage1-4.yaml`` (a range in shorthand) names stage1 ... stage4."""
    m = re.fullmatch(r"(.*?)(\d+)-(\d+)\.yaml", name)
    return [f"{m.group(1)}{i}.yaml" for i in range(int(m.group(2)), int(m.group(3)) + 1)] if m else [name]


def test_every_config_file_the_documentation_names_exists():
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "configs").rglob("*.yaml"))]
    missing = sorted({f"{p.relative_to(REPO)}: {m}" for p in files
                      for m in CONFIG_PATH.findall(p.read_text(encoding="utf-8"))
                      if not all((REPO / n).is_file() for n in named_files(m))})
    assert not missing, "\n".join(missing)


def test_protocol_commands_use_existing_options_and_config_keys():
    cmds = commands(section("WebVision protocol"))
    assert len(cmds) >= 15
    helps: dict[tuple[str, str], str] = {}
    for argv in cmds:
        if argv[:2] == ["python", "-m"]:
            stage, sub, args = argv[2], argv[3], argv[4:]
            if (stage, sub) not in helps:
                res = subprocess.run([sys.executable, "-m", stage, sub, "--help"], cwd=REPO, capture_output=True,
                                     text=True, timeout=120)
                assert res.returncode == 0, f"python -m {stage} {sub} --help: {res.stderr[-500:]}"
                helps[stage, sub] = res.stdout
            for opt in (a for a in args if a.startswith("--")):
                assert re.search(rf"{re.escape(opt)}\b", helps[stage, sub]), f"{' '.join(argv)}: no {opt}"
            train = stage if sub == "train" else None
        else:
            assert argv[:2] == ["accelerate", "launch"], argv
            train, args = argv[2].split("/")[0], argv[3:]
        if train in TRAIN_CONFIG:
            yaml_path = args[args.index("--config") + 1]
            overrides = [a for a in args if "=" in a and not a.startswith("--")]
            load_config(TRAIN_CONFIG[train], REPO / yaml_path, overrides)


@pytest.mark.parametrize("title", ["WebVision protocol"])
def test_results_table_has_the_published_figures(title):
    text = section(title)
    for figure in ("52.0 / 76.1", "53.4 / 76.8", "55.5 / 77.8", "77.32 / 91.64", "75.20 / 90.84"):
        assert figure in text
