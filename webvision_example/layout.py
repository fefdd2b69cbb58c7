"""Where the files of a plan go in the WebVision 1.0 or 2.0 layout, and their text.

``info_lists`` makes the ``info/`` lists of the version, ``readme_lines`` the README, and
``write_text_files`` writes them with the metadata JSON into a (temporary) release folder.
The differences between the versions::

    1.0: qNNNN folders; info/queries_google.txt and queries_flickr.txt; a 1-based query map;
         the JSON beside the images (google/q0001.json)
    2.0: qNNNNN folders; info/queries.txt; a 0-based query map; the JSON under meta/
"""
from __future__ import annotations

import json
from pathlib import Path

from webvision_example.plan import SOURCES, Plan

VERSIONS = ("1.0", "2.0")
COMMAND = "python -m webvision_example"


def query_dir(query_id: int, version: str) -> str:
    return f"q{query_id:04d}" if version == "1.0" else f"q{query_id:05d}"


def json_location(source: str, query_id: int, version: str) -> tuple[str, str]:
    """(path written in the meta lists, path of the file under ROOT)."""
    listed = f"{source}/{query_dir(query_id, version)}.json"
    return listed, (listed if version == "1.0" else f"meta/{listed}")


def _train_lists(plan: Plan, source: str, version: str) -> tuple[list[str], list[str]]:
    """(train_filelist, train_meta_list) lines of one source."""
    files: list[str] = []
    metas: list[str] = []
    for m in plan.of_source(source):
        folder = f"{source}/{query_dir(m.query_id, version)}"
        listed, _written = json_location(source, m.query_id, version)
        for name, row in m.images:
            files.append(f"{folder}/{name} {m.class_id}")
            metas.append(f"{listed} {row}")
    return files, metas


def info_lists(plan: Plan, version: str) -> dict[str, list[str]]:
    """File name under ``info/`` -> its lines."""
    info: dict[str, list[str]] = {"synsets.txt": [c.synset_line() for c in plan.classes]}
    query_lines = [f"{qid} {q}" for qid, _cid, q in plan.queries]
    if version == "1.0":
        info["queries_google.txt"] = query_lines
        info["queries_flickr.txt"] = query_lines
        info["queries_synsets_map.txt"] = [f"{qid} {cid + 1}" for qid, cid, _ in plan.queries]
    else:
        info["queries.txt"] = query_lines
        info["queries_synsets_map.txt"] = [f"{qid} {cid}" for qid, cid, _ in plan.queries]
    lists = {source: _train_lists(plan, source, version) for source in SOURCES}
    for source in SOURCES:
        info[f"train_filelist_{source}.txt"], info[f"train_meta_list_{source}.txt"] = lists[source]
    info["train_filelist_all.txt"] = lists["google"][0] + lists["flickr"][0]
    info["train_meta_list_all.txt"] = lists["google"][1] + lists["flickr"][1]
    info["val_filelist.txt"] = [f"val{i + 1:06d}.jpg {cid}" for i, cid in enumerate(plan.val_labels)]
    info["test_filelist.txt"] = [f"test{i + 1:06d}.jpg" for i in range(len(plan.test_labels))]
    return info


def readme_lines(summary: dict, images: bool) -> list[str]:
    return [
        f"Generated WebVision-format example (webtag: {COMMAND}).",
        "Not real data: classes are real WordNet 3.0 synsets, texts and images are synthetic.",
        f"version: {summary['version']}",
        f"seed: {summary['seed']}",
        f"classes: {summary['classes']}",
        f"queries: {summary['queries']}",
        f"train images: {summary['train_total']} (google {summary['train']['google']}, "
        f"flickr {summary['train']['flickr']})",
        f"val images: {summary['val']}",
        f"test images: {summary['test']}",
        f"metadata files: {summary['json_files']} ({summary['json_records']} records)",
        f"image files: {'yes' if images else 'no (lists only)'}",
    ]


def dump_json(records: list[dict], style: float) -> str:
    """The JSON text of one metadata list, in one of three styles (indented, compact, spaced)."""
    if style < 0.4:
        dumped = json.dumps(records, ensure_ascii=False, indent=2)
    elif style < 0.8:
        dumped = json.dumps(records, ensure_ascii=False, separators=(",", ":"))
    else:
        dumped = json.dumps(records, ensure_ascii=False)
    return dumped + "\n"


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("".join(line + "\n" for line in lines))


def write_text_files(root: Path, plan: Plan, version: str, info: dict[str, list[str]],
                     readme: list[str]) -> None:
    """The lists, the README and the metadata JSON, under the release folder ``root``."""
    for name, lines in info.items():
        _write_lines(root / "info" / name, lines)
    _write_lines(root / "README.txt", readme)
    for m, style in zip(plan.metadata, plan.json_styles):
        path = root / json_location(m.source, m.query_id, version)[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(dump_json(m.records, style))
