"""Finetuning entry point for ``accelerate launch``: parse the config, build the trainer, run.

    accelerate launch finetune/main.py --config configs/finetune/webvision.yaml init=PATH [key=value ...]

Exit status: see finetune/cli.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts finetune/ first on sys.path, where config.py, ... would shadow
# top-level modules of the same names: take it off again.
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
if str(_here.parent) not in sys.path:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(_here.parent))

from finetune.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
