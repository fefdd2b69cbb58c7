"""WordNet 3.0 for NLTK: installation from Debian's packages and loading.

Users with internet can ``nltk.download('wordnet')``; offline machines install Debian's
``wordnet-base`` and ``wordnet-sense-index`` and run ``python -m text_mining install-wordnet``,
which copies (NLTK does not follow every link) ``/usr/share/wordnet`` into
``<nltk_data>/corpora/wordnet`` and writes the ``lexnames`` file that the Debian package lacks.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

DEBIAN_WORDNET = Path("/usr/share/wordnet")

# lexnames(5WN): file number, lexicographer file name, syntactic category (1 noun, 2 verb,
# 3 adjective, 4 adverb).
LEXNAMES = [
    "adj.all 3", "adj.pert 3", "adv.all 4", "noun.Tops 1", "noun.act 1", "noun.animal 1",
    "noun.artifact 1", "noun.attribute 1", "noun.body 1", "noun.cognition 1",
    "noun.communication 1", "noun.event 1", "noun.feeling 1", "noun.food 1", "noun.group 1",
    "noun.location 1", "noun.motive 1", "noun.object 1", "noun.person 1", "noun.phenomenon 1",
    "noun.plant 1", "noun.possession 1", "noun.process 1", "noun.quantity 1", "noun.relation 1",
    "noun.shape 1", "noun.state 1", "noun.substance 1", "noun.time 1", "verb.body 2",
    "verb.change 2", "verb.cognition 2", "verb.communication 2", "verb.competition 2",
    "verb.consumption 2", "verb.contact 2", "verb.creation 2", "verb.emotion 2", "verb.motion 2",
    "verb.perception 2", "verb.possession 2", "verb.social 2", "verb.stative 2", "verb.weather 2",
    "adj.ppl 3",
]

REQUIRED_FILES = ["data.noun", "index.noun", "data.adj", "index.adj", "data.verb", "index.verb",
                  "data.adv", "index.adv", "noun.exc", "adj.exc", "verb.exc", "adv.exc"]

INSTALL_HELP = (
    "WordNet 3.0 for NLTK was not found{where}. Install it with one of:\n"
    "  - Debian/Ubuntu (offline-friendly): apt-get install wordnet-base wordnet-sense-index && "
    "python -m text_mining install-wordnet\n"
    "  - with internet: python -c \"import nltk; nltk.download('wordnet')\"\n"
    "or point the config key wordnet.nltk_data (or the NLTK_DATA variable) at an nltk_data folder "
    "that holds corpora/wordnet."
)


class WordNetMissing(RuntimeError):
    """WordNet data is not installed where NLTK (or the config) looks."""


def default_nltk_data() -> Path:
    """``<sys.prefix>/nltk_data``: on NLTK's default search path, private to the environment."""
    return Path(sys.prefix) / "nltk_data"


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name.split()[0]}\t{name.split()[1]}\n" for i, name in enumerate(LEXNAMES))


def install_wordnet(source: str | Path = DEBIAN_WORDNET, dest: str | Path | None = None) -> Path:
    """Copy a WordNet 3.0 database folder into ``<dest>/corpora/wordnet``. Safe to run twice."""
    source = Path(source)
    missing = [f for f in REQUIRED_FILES if not (source / f).is_file()]
    if missing:
        raise WordNetMissing(
            f"{source} is not a WordNet 3.0 database (missing {', '.join(missing)}); "
            "install Debian's wordnet-base and wordnet-sense-index first"
        )
    dest = Path(dest) if dest else default_nltk_data()
    target = dest / "corpora" / "wordnet"
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        if entry.is_file():
            out = target / entry.name
            if not out.exists() or out.stat().st_size != entry.stat().st_size:
                shutil.copyfile(entry, out)  # a copy, not a link
    (target / "lexnames").write_text(lexnames_text(), encoding="ascii")
    log.info("WordNet installed in %s", target)
    return target


def load_wordnet(nltk_data: str | None = None):
    """Return an NLTK ``WordNetCorpusReader`` for WordNet 3.0, one per process.

    NLTK's reader seeks in open files; a reader inherited through fork() would share those file
    offsets with its parent and siblings and read wrong records, so each process builds its own.
    ``nltk_data``: an nltk_data folder to search first (config ``wordnet.nltk_data``); otherwise
    NLTK's usual lookup (``NLTK_DATA``, ``~/nltk_data``, ``<sys.prefix>/nltk_data``, ...)."""
    return _load_wordnet(nltk_data, os.getpid())


@functools.lru_cache(maxsize=4)
def _load_wordnet(nltk_data: str | None, pid: int):
    """Return an NLTK ``WordNetCorpusReader`` for WordNet 3.0.

    ``nltk_data``: an nltk_data folder to search first (config ``wordnet.nltk_data``); otherwise
    NLTK's usual lookup (``NLTK_DATA``, ``~/nltk_data``, ``<sys.prefix>/nltk_data``, ...)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    if nltk_data:
        root = Path(nltk_data).expanduser().resolve()
        if str(root) not in nltk.data.path:
            nltk.data.path.insert(0, str(root))
    try:
        pointer = nltk.data.find("corpora/wordnet")
    except LookupError:
        where = f" under {nltk_data} or NLTK's search path" if nltk_data else " on NLTK's search path"
        raise WordNetMissing(INSTALL_HELP.format(where=where)) from None
    class WordNet30(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):
            # NLTK maps synset ids to another WordNet version for its multilingual data, re-reading
            # index.sense twice (~5 s per process); webtag needs no multilingual data.
            return None

        _scan_satellites = _scan_satellites
        _load_lemma_pos_offset_map = _load_lemma_pos_offset_map

    try:
        with warnings.catch_warnings(), _no_gc():
            warnings.filterwarnings("ignore", message="The multilingual functions")
            reader = WordNet30(pointer, None)
    except (OSError, LookupError) as exc:
        raise WordNetMissing(
            f"WordNet at {pointer} is incomplete ({exc}).\n" + INSTALL_HELP.format(where="")
        ) from None
    version = reader.get_version()
    if version != "3.0":
        raise WordNetMissing(f"WordNet at {pointer} is version {version}; webtag needs WordNet 3.0 "
                             "(the WebVision class ids are WordNet 3.0 offsets)")
    return reader


@contextlib.contextmanager
def _no_gc():
    """The cyclic garbage collector paused: building the ~1M objects of WordNet's index set it off
    again and again over a growing heap (half of the 0.8 s the reader took)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def read_lines(wn, name: str) -> list[str]:
    """The lines of one of WordNet's files: read directly when it is a folder on disk (NLTK's
    seekable stream reads line by line about 10x slower), through NLTK's opener otherwise."""
    path = getattr(wn.root, "path", None)
    if path and os.path.isfile(os.path.join(path, name)):
        with open(os.path.join(path, name), encoding="utf-8") as fh:
            return fh.read().splitlines()
    with wn.open(name) as fh:
        return fh.read().splitlines()


# NLTK's reader builds its lemma index and its set of satellite adjectives from index.* and
# data.adj line by line through its seekable stream and a closure per token: load_wordnet took
# ~1.4 s of CPU per process, ~0.85 s with the files read at once (read_lines) and each line split
# once, ~0.5 s with the garbage collector paused too (_no_gc). The two methods below are NLTK
# 3.10's WordNetCorpusReader._scan_satellites and _load_lemma_pos_offset_map with that reading;
# the same dicts, in the same order (test_wordnet_load.py compares them). A line they do not
# expect is left to NLTK's own method, for NLTK's error.

def _scan_satellites(self) -> None:
    satellites = set()
    for line in read_lines(self, "data.adj"):
        if not line.strip() or line.startswith(" "):
            continue
        fields = line.split(None, 3)
        if len(fields) >= 3 and fields[2] == "s":
            satellites.add(int(fields[0]))
    self.satellite_offsets = satellites


def _load_lemma_pos_offset_map(self) -> None:
    from nltk.corpus.reader.wordnet import ADJ, ADJ_SAT, WordNetCorpusReader
    index, satellites = self._lemma_pos_offset_map, self.satellite_offsets
    try:
        for suffix in self._FILEMAP.values():
            for line in read_lines(self, f"index.{suffix}"):
                if line.startswith(" "):
                    continue
                fields = line.split()
                lemma, pos, n_synsets, n_pointers = fields[0], fields[1], int(fields[2]), int(fields[3])
                at = 4 + n_pointers   # lemma pos n_synsets n_pointers pointers.. n_senses n_tagged offsets..
                offsets = [int(off) for off in fields[at + 2:at + 2 + n_synsets]]
                if (n_synsets <= 0 or n_pointers < 0 or int(fields[at]) != n_synsets
                        or len(offsets) != n_synsets):
                    raise ValueError(line)
                index[lemma][pos] = offsets
                if pos == ADJ:
                    index[lemma][ADJ_SAT] = [off for off in offsets if off in satellites]
    except (ValueError, IndexError):
        index.clear()
        WordNetCorpusReader._load_lemma_pos_offset_map(self)   # NLTK's, for its error message


def synset_from_wnid(wn, wnid: str):
    """``n02084071`` -> the WordNet 3.0 noun synset at that offset."""
    if len(wnid) != 9 or wnid[0] not in "nvasr" or not wnid[1:].isdigit():
        raise ValueError(f"{wnid!r} is not a WordNet id like n02084071")
    return wn.synset_from_pos_and_offset(wnid[0], int(wnid[1:]))


def wnid_of(synset) -> str:
    return f"{synset.pos()}{synset.offset():08d}"
