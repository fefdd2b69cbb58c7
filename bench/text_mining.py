"""Benchmark of the text-mining stage: records/s/core for each step and end to end.

    python bench/text_mining.py [--records 100000] [--classes 1000] [--workers N] [--config YAML] \
        [--text realistic|example] [--types 1000000] [--workdir DIR] [--rss-per-step] [--set KEY=VALUE]

Generates a WebVision-format release of metadata only, with ``--text realistic`` (default) the
example generator's records extended by a Zipf model of web text (bench/realistic_text.py: a long
tail of lemmas, inflections, misspellings, other languages, brands, numbers, URLs, hashtags;
Google records short, Flickr long), with ``--text example`` the example generator's own text.
Then runs count -> vocabulary -> tag -> merge with N worker processes, each limited to cores / N
math-library threads (webtag.parallel), and prints per step and end to end: wall seconds,
records/s, and CPU seconds per record from the processes' own rusage (this process and its
reaped workers), whose inverse is what one core really does. The goal (issue 19): >= 3000
records/s/core end to end on realistic text.

Baseline, measured in the same run on the same records: a plain per-record pipeline (tokenize,
filter, lemmatise every token occurrence afresh, no caches), and the same with webtag's
per-distinct-token cache, with the distinct-token count and the cache's hit rate. Also in the same
run: the recall@knn_k of the tag step's ivf KNN search against exact search on 2000 tagged images
(bench/knn_recall.py).

``--rss-per-step`` runs each step in a fresh (spawned) process, as ``python -m text_mining STEP``
does on a cluster, and prints its peak resident memory (ru_maxrss of that process, and of its
largest pool worker for a map step with N > 1); the start-up (imports) counts in the step's time.
A reduce step's memory is bounded by ``reduce.memory_mb`` (text_mining/spill.py), a map part's
by its size and the same key.
``--workdir DIR`` keeps the generated release in DIR/release and reuses it in later runs (the
outputs, DIR/out, are made afresh each run). ``--set reduce.memory_mb=256`` overrides config keys.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
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
from webtag.parallel import limit_threads, threads_per_worker  # noqa: E402
from webvision_example import make_example  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from realistic_text import realistic_release  # noqa: E402
from knn_recall import describe as describe_knn, knn_figure  # noqa: E402


class UncachedLexicon(WordNetLexiconFilter):
    """The same decisions, recomputed for every token occurrence with NLTK's own calls (no cache,
    no in-memory sense counts): a plain per-record pipeline."""

    tokens_seen = 0

    def keywords(self, tokens):
        self.tokens_seen += len(tokens)
        out = []
        for tok in tokens:
            kw = self.decide_nltk(tok.lower())
            if kw is not None:
                out.append(kw)
        return out


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its reaped children (pool workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _run_step(name: str, root: Path, out: Path, cfg: TextMiningConfig, workers: int):
    if name.startswith("count"):
        return _map(count_part, root, out, cfg, workers, workers, "count")
    if name.startswith("vocabulary"):
        return build_vocabulary(root, out, cfg)
    if name.startswith("tag"):
        return _map(tag_part, root, out, cfg, workers, workers, "tag")
    return merge(root, out, cfg)


def _step_child(name, root, out, cfg, workers, queue) -> None:
    """One step in a fresh process: its result and its own and its workers' peak RSS (bytes)."""
    setup_logging("WARNING")
    limit_threads(threads_per_worker(workers))
    result = _run_step(name, root, out, cfg, workers)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    queue.put((result if isinstance(result, dict) else None, own, kids))


def run_isolated(name: str, root: Path, out: Path, cfg: TextMiningConfig, workers: int):
    """(result, peak RSS of the step's process, peak RSS of its largest worker) of a step run in
    a spawned process (nothing inherited from this one's heap)."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_step_child, args=(name, root, out, cfg, workers, queue))
    proc.start()
    import queue as queue_mod
    while True:   # a step that dies puts nothing: do not wait for it forever
        try:
            result = queue.get(timeout=1.0)
            break
        except queue_mod.Empty:
            if not proc.is_alive():
                raise SystemExit(f"step {name} failed (exit {proc.exitcode})") from None
    proc.join()
    return result


def baseline_rate(root: Path, cfg: TextMiningConfig, n: int) -> tuple[float, float, int, int]:
    """records/s of reading + extraction on one core, without and with the token cache; the
    token occurrences and the distinct tokens (the cache's entries) of those records."""
    wn = load_wordnet(cfg.wordnet.nltk_data)
    release = Release(root, cfg.reader)
    rates = []
    plain, cached = UncachedLexicon(cfg.keywords, wn), WordNetLexiconFilter(cfg.keywords, wn)
    for filt in (plain, cached):
        ex = KeywordExtractor(cfg.keywords, wn, filt)
        t = time.perf_counter()
        k = 0
        for rec in release.iter_records(0, n, Problems()):
            ex.extract(rec.title, rec.description, rec.tags)
            k += 1
        rates.append(k / (time.perf_counter() - t))
    return rates[0], rates[1], plain.tokens_seen, len(cached.cache)


def distinct_keywords(out: Path) -> int:
    """Distinct keywords over the whole corpus (the union of the count parts' tables)."""
    import pyarrow.parquet as pq
    words: set = set()
    for f in sorted((out / "_work" / "count").glob("part-*/counts.parquet")):
        words.update(pq.read_table(f, columns=["keyword"])["keyword"].to_pylist())
    return len(words)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--config", default=str(REPO / "configs" / "text_mining" / "webvision.yaml"))
    ap.add_argument("--baseline-records", type=int, default=5000)
    ap.add_argument("--text", choices=["realistic", "example"], default="realistic")
    ap.add_argument("--types", type=int, default=1_000_000, help="word types of the realistic model")
    ap.add_argument("--workdir", default=None, help="keep the generated data and outputs here")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--rss-per-step", action="store_true",
                    help="run each step in its own spawned process and report its peak RSS")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. reduce.memory_mb=256 (repeatable)")
    args = ap.parse_args()
    setup_logging("WARNING")
    cfg = load_config(TextMiningConfig, args.config, args.set)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_tm_"))
    root, out = work / "release", work / "out"
    shutil.rmtree(out, ignore_errors=True)
    per_class = max(1, -(-args.records // args.classes))
    if not (root / "README.txt").exists():
        t = time.perf_counter()
        if args.text == "realistic":
            realistic_release(root, args.classes, per_class, seed=0, n_types=args.types,
                              nltk_data=cfg.wordnet.nltk_data)
        else:
            make_example(root, classes=args.classes, images_per_class=per_class, seed=0, images=False)
        print(f"generated {args.classes * per_class} metadata records in {time.perf_counter() - t:.1f}s -> {root}")
    n = Release(root, cfg.reader).total
    workers = args.workers
    # the reduce steps run in this process: at most cores / workers threads too, like a worker
    limit_threads(threads_per_worker(workers))
    steps, cpu, rss = {}, {}, {}
    t0, c0 = time.perf_counter(), cpu_seconds()
    for name in ("count (map)", "vocabulary (reduce)", "tag (map)", "merge (reduce)"):
        t, c = time.perf_counter(), cpu_seconds()
        if args.rss_per_step:
            report, own, kids = run_isolated(name, root, out, cfg, workers)
            rss[name] = {"process": own, "largest_worker": kids}
        else:
            report = _run_step(name, root, out, cfg, workers)
        steps[name], cpu[name] = time.perf_counter() - t, cpu_seconds() - c
    total, total_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    base_uncached, base_cached, tokens, distinct = baseline_rate(root, cfg, args.baseline_records)
    corpus_keywords = distinct_keywords(out)
    # the tag step's KNN search: recall of ivf against exact, same run, same data (bench/knn_recall.py)
    knn_fig = knn_figure(out, cfg)

    print(f"\n{n} records ({args.text} text), {workers} worker processes x "
          f"{threads_per_worker(workers)} threads on {os.cpu_count()} cores, tagger {report['tagger']}, "
          f"{corpus_keywords} distinct keywords in the corpus, vocabulary {report['stats']['vocabulary_size']}, "
          f"{report['stats']['classes']} classes, {report['stats']['mean_keywords_per_image']:.2f} keywords/image")
    # a step's largest descendant: its pool workers (only with N > 1; otherwise any fork+exec,
    # which reports the parent's size at the fork)
    show_kids = rss and workers > 1
    rss_head = (f"{'peak RSS GB':>13}" + (f"{'worker GB':>11}" if show_kids else "")) if rss else ""
    print(f"{'step':<22}{'seconds':>10}{'records/s':>12}{'CPU ms/rec':>12}{'records/CPU-s':>15}{rss_head}")
    for name in steps:
        mem = f"{rss[name]['process'] / 1e9:>13.3f}" if rss else ""
        mem += f"{rss[name]['largest_worker'] / 1e9:>11.3f}" if show_kids else ""
        print(f"{name:<22}{steps[name]:>10.2f}{n / steps[name]:>12.0f}{1e3 * cpu[name] / n:>12.3f}"
              f"{n / max(cpu[name], 1e-9):>15.0f}{mem}")
    e2e = n / max(total_cpu, 1e-9)
    print(f"{'end to end':<22}{total:>10.2f}{n / total:>12.0f}{1e3 * total_cpu / n:>12.3f}{e2e:>15.0f}")
    print(f"\ngoal >= 3000 records per CPU-second end to end: {'met' if e2e >= 3000 else 'NOT met'} "
          f"({e2e / 3000:.2f}x the goal); 16M records on 32 cores would take "
          f"{16e6 / (e2e * 32) / 60:.1f} min at this rate")
    print(f"baseline (same run, one core, read + extract, {args.baseline_records} records, {tokens} token "
          f"occurrences, {distinct} distinct tokens, cache hit rate {1 - distinct / max(tokens, 1):.3f}): "
          f"plain per-occurrence pipeline {base_uncached:.0f} rec/s, with the token cache {base_cached:.0f} rec/s "
          f"({base_cached / base_uncached:.1f}x); end to end per CPU-second vs the plain pipeline: "
          f"{e2e / base_uncached:.2f}x")
    print(describe_knn(knn_fig))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "records": n, "text": args.text, "workers": workers, "seconds": steps, "cpu_seconds": cpu,
            "total_seconds": total, "total_cpu_seconds": total_cpu, "records_per_cpu_second": e2e,
            "baseline_uncached": base_uncached, "baseline_cached": base_cached, "tokens": tokens,
            "distinct_tokens": distinct, "cache_hit_rate": 1 - distinct / max(tokens, 1),
            "distinct_keywords": corpus_keywords, "peak_rss_bytes": rss, "knn_search": knn_fig}, indent=1))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
