"""python -m pretrain train --config YAML [key=value ...]: pretraining in this one process
(multi-process and multi-node runs go through `accelerate launch pretrain/main.py`)."""
import sys

from pretrain.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not argv or argv[0] != "train":
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(argv[1:]))
