"""python -m pretrain train --config YAML [key=value ...]: pretraining in this one process
(multi-process and multi-node runs go through `accelerate launch pretrain/main.py`).
python -m pretrain graph --labels DIR --tau 0.4 --p 0.2 --out FILE.npz: ML-GCN's label graph."""
import sys

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv and argv[0] == "train":
        from pretrain.cli import main
        sys.exit(main(argv[1:]))
    if argv and argv[0] == "graph":
        from pretrain.graph_cli import main
        sys.exit(main(argv[1:]))
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__ + "\n`python -m pretrain train --help` lists every config key.")
        sys.exit(0)
    print(__doc__, file=sys.stderr)
    sys.exit(2)
