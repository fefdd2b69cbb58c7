"""Benchmark of the text-mining stage: records/s/core for each step and end to end.

    python bench/text_mining.py [--records 100000] [--classes 1000] [--workers N] [--config YAML]

Generates a WebVision-format release of metadata only (python -m webvision_example --no-images),
then runs count -> vocabulary -> tag -> merge with N worker processes (default: all cores) and
prints the throughput of each step per core. The goal (issue 2): the 16M records of WebVision 2.0
in under an hour on one 32-core node, i.e. >= 140 records/s/core end to end.

Baseline, measured in the same run on the same records: the count step's keyword extraction
without the per-distinct-token cache (what a plain per-occurrence implementation pays); the
ratio shows what the caches buy.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from text_mining.config import TextMiningConfig  # noqa: E402
from text_mining.count import count_part  # noqa: E402
from text_mining.keywords import KeywordExtractor, WordNetLexiconFilter  # noqa: E402
from text_mining.merge import merge  # noqa: E402
from text_mining.problems import Problems  # noqa: E402
from text_mining.runner import _map  # noqa: E402
from text_mining.tag import tag_part  # noqa: E402
from text_mining.vocabulary import build_vocabulary  # noqa: E402
from text_mining.webvision import Release  # noqa: E402
from text_mining.wordnet import load_wordnet  # noqa: E402
from webtag.config import load_config  # noqa: E402
from webtag.logs import setup_logging  # noqa: E402
from webvision_example import make_example  # noqa: E402


class UncachedLexicon(WordNetLexiconFilter):
    """The same decisions, recomputed for every token occurrence (no cache)."""

    def keywords(self, tokens):
        out = []
        for tok in tokens:
            kw = self._decide(tok.lower())
            if kw is not None:
                out.append(kw)
        return out


def baseline_rate(root: Path, cfg: TextMiningConfig, n: int) -> tuple[float, float]:
    """records/s of reading + extraction on one core, without and with the token cache."""
    wn = load_wordnet(cfg.wordnet.nltk_data)
    release = Release(root, cfg.reader)
    rates = []
    for filt in (UncachedLexicon(cfg.keywords, wn), WordNetLexiconFilter(cfg.keywords, wn)):
        ex = KeywordExtractor(cfg.keywords, wn, filt)
        t = time.perf_counter()
        k = 0
        for rec in release.iter_records(0, n, Problems()):
            ex.extract(rec.title, rec.description, rec.tags)
            k += 1
        rates.append(k / (time.perf_counter() - t))
    return rates[0], rates[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--config", default=str(REPO / "configs" / "text_mining" / "webvision.yaml"))
    ap.add_argument("--baseline-records", type=int, default=5000)
    ap.add_argument("--workdir", default=None, help="keep the generated data and outputs here")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    setup_logging("WARNING")
    cfg = load_config(TextMiningConfig, args.config)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_tm_"))
    root, out = work / "release", work / "out"
    shutil.rmtree(out, ignore_errors=True)
    per_class = max(1, -(-args.records // args.classes))
    if not (root / "README.txt").exists():
        t = time.perf_counter()
        make_example(root, classes=args.classes, images_per_class=per_class, seed=0, images=False)
        print(f"generated {args.classes * per_class} metadata records in {time.perf_counter() - t:.1f}s -> {root}")
    n = Release(root, cfg.reader).total
    cores = args.workers
    steps = {}
    t0 = time.perf_counter()
    t = time.perf_counter()
    _map(count_part, root, out, cfg, cores, cores, "count")
    steps["count (map)"] = time.perf_counter() - t
    t = time.perf_counter()
    build_vocabulary(root, out, cfg)
    steps["vocabulary (reduce)"] = time.perf_counter() - t
    t = time.perf_counter()
    _map(tag_part, root, out, cfg, cores, cores, "tag")
    steps["tag (map)"] = time.perf_counter() - t
    t = time.perf_counter()
    report = merge(root, out, cfg)
    steps["merge (reduce)"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    base_uncached, base_cached = baseline_rate(root, cfg, args.baseline_records)

    print(f"\n{n} records, {cores} cores (worker processes; word2vec threads: "
          f"{cfg.word2vec.workers or os.cpu_count()}), tagger {report['tagger']}, "
          f"vocabulary {report['stats']['vocabulary_size']}, {report['stats']['classes']} classes, "
          f"{report['stats']['mean_keywords_per_image']:.2f} keywords/image")
    print(f"{'step':<22}{'seconds':>10}{'records/s':>12}{'records/s/core':>16}")
    for name, sec in steps.items():
        print(f"{name:<22}{sec:>10.2f}{n / sec:>12.0f}{n / sec / cores:>16.0f}")
    e2e = n / total / cores
    print(f"{'end to end':<22}{total:>10.2f}{n / total:>12.0f}{e2e:>16.0f}")
    print(f"\ngoal >= 140 records/s/core end to end: {'met' if e2e >= 140 else 'NOT met'} "
          f"({e2e / 140:.1f}x the goal); 16M records on 32 cores would take "
          f"{16e6 / (e2e * 32) / 60:.1f} min at this rate")
    print(f"baseline (same run, one core, read + extract, {args.baseline_records} records): "
          f"no token cache {base_uncached:.0f} rec/s, with cache {base_cached:.0f} rec/s "
          f"(cache speed-up {base_cached / base_uncached:.1f}x); count step per core vs uncached baseline: "
          f"{n / steps['count (map)'] / cores / base_uncached:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "records": n, "cores": cores, "seconds": steps, "total_seconds": total,
            "records_per_s_per_core": e2e, "baseline_uncached": base_uncached,
            "baseline_cached": base_cached}, indent=1))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
