"""python -m pretrain graph: write ML-GCN's label graph with statistics, to choose tau and p.

    python -m pretrain graph --labels DIR [--target keywords|weights] [--tau 0.4] [--p 0.2]
                             [--variant paper|original] --out FILE.npz

FILE.npz is a scipy sparse matrix (scipy.sparse.load_npz): the propagation matrix A_hat the GCN
uses; FILE.json beside it holds the statistics (labels, edges, density, neighbours per label,
labels without a neighbour).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pretrain graph", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", required=True, help="text-mining output folder")
    ap.add_argument("--target", choices=["keywords", "weights"], default="keywords",
                    help="keywords: the vocabulary; weights: the classes (LW-Set label ids)")
    ap.add_argument("--tau", type=float, default=0.4)
    ap.add_argument("--p", type=float, default=0.2)
    ap.add_argument("--variant", choices=["paper", "original"], default="paper")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import pyarrow.parquet as pq
    import scipy.sparse as sp

    from text_mining import schema as tm
    from webtag.atomic import atomic_file, write_text_atomic

    from .graph import graph_stats, label_graph
    from .options import label_lists
    labels = Path(args.labels)
    table = tm.VOCABULARY_FILE if args.target == "keywords" else tm.CLASSES_FILE
    n = pq.read_metadata(labels / table).num_rows
    a_hat = label_graph(label_lists(labels, args.target), n, args.tau, args.p, args.variant)
    stats = {**graph_stats(a_hat), "tau": args.tau, "p": args.p, "variant": args.variant, "target": args.target,
             "labels_dir": str(labels.resolve())}
    out = Path(args.out)
    with atomic_file(out) as tmp, open(tmp, "wb") as fh:   # a file object: save_npz adds no suffix
        sp.save_npz(fh, a_hat)
    write_text_atomic(out.with_suffix(".json"), json.dumps(stats, indent=2) + "\n")
    print(f"{stats['labels']} labels, {stats['edges']} edges, density {stats['density']:.3g}, "
          f"{stats['mean_neighbours']:.2f} neighbours per label (max {stats['max_neighbours']}), "
          f"{stats['isolated_labels']} without a neighbour -> {out}")
    return 0
