"""python -m finetune {train,evaluate,predict,pseudo-label,ensemble} ... (see finetune/cli.py)."""
import sys

from finetune.cli import main

if __name__ == "__main__":
    sys.exit(main())
