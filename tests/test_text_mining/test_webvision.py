"""The release readers on both layouts."""
import json
import shutil

import pytest

from text_mining.config import ReaderConfig
from text_mining.problems import Problems
from text_mining.webvision import Release, ReleaseError, salvage_json_list
from webtag.parallel import part_range


def _lines(path):
    return [l.split() for l in path.read_text().splitlines() if l.strip()]


@pytest.mark.parametrize("fixture", ["example_v1", "example_v2"])
def test_reads_every_record_with_its_metadata(fixture, request):
    root = request.getfixturevalue(fixture)
    rel = Release(root)
    files = _lines(root / "info" / "train_filelist_all.txt")
    metas = _lines(root / "info" / "train_meta_list_all.txt")
    assert rel.total == len(files)
    problems = Problems()
    recs = list(rel.iter_records(0, rel.total, problems))
    assert [r.index for r in recs] == list(range(len(files)))
    version = "1.0" if fixture == "example_v1" else "2.0"
    assert rel.version == version
    assert rel.map_base == (1 if version == "1.0" else 0)
    json_root = root if version == "1.0" else root / "meta"
    for rec, (path, cls), (jpath, row) in zip(recs, files, metas):
        assert rec.path == path and rec.class_id == int(cls)
        assert rec.key == path.rsplit(".", 1)[0]
        assert rec.source == path.split("/")[0]
        assert rec.query_id == int(path.split("/")[1][1:])
        meta = json.loads((json_root / jpath).read_text(encoding="utf-8"))[int(row) - 1]
        assert rec.title == (meta.get("title") or "")
        assert rec.has_meta
        # the query's class (from the query map) is the image's class
        assert rel.query_class[rec.query_id] == rec.class_id
    assert set(problems.counts) <= {"empty_text"}


def test_classes_and_queries(example_v1, wn):
    rel = Release(example_v1)
    first = (example_v1 / "info" / "synsets.txt").read_text().splitlines()[0]
    wnid, words = first.split(" ", 1)
    assert rel.classes[0].wnid == wnid and rel.classes[0].name == words.split(",")[0].strip()
    qid, text = (example_v1 / "info" / "queries_google.txt").read_text().splitlines()[0].split(" ", 1)
    assert rel.query_text("google", int(qid)) == text.replace("+", " ")


def test_parts_partition_the_list(example_v1):
    rel = Release(example_v1)
    seen = []
    for part in range(3):
        lo, hi = part_range(rel.total, part, 3)
        seen += [r.index for r in rel.iter_records(lo, hi, Problems())]
    assert seen == list(range(rel.total))
    with pytest.raises(ValueError):
        part_range(rel.total, 3, 3)


def test_per_source_lists_without_all(example_v1, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(example_v1 / "info", root / "info")
    for name in ("google", "flickr"):
        (root / name).mkdir()
    for f in (root / "info").glob("*_all.txt"):
        f.unlink()
    for src in ("google", "flickr"):
        for j in example_v1.glob(f"{src}/*.json"):
            shutil.copy(j, root / src / j.name)
    rel = Release(root, ReaderConfig(check_images="never"))
    n_google = len(_lines(root / "info" / "train_filelist_google.txt"))
    recs = list(rel.iter_records(0, rel.total, Problems()))
    assert all(r.source == "google" for r in recs[:n_google])
    assert all(r.source == "flickr" for r in recs[n_google:])
    only_google = Release(root, ReaderConfig(check_images="never", sources=["google"]))
    assert len(list(only_google.iter_records(0, rel.total, Problems()))) == n_google


def test_meta_root_variants(example_v2, tmp_path):
    # the JSON of this copy lives in google_json/ and flickr_json/
    root = tmp_path / "r"
    shutil.copytree(example_v2 / "info", root / "info")
    for src in ("google", "flickr"):
        shutil.copytree(example_v2 / "meta" / src, root / f"{src}_json")
    p = Problems()
    recs = list(Release(root).iter_records(0, 10, p))
    assert all(r.has_meta for r in recs) and "missing_json" not in p.counts
    # or an explicit metadata root
    root2 = tmp_path / "r2"
    shutil.copytree(example_v2 / "info", root2 / "info")
    p = Problems()
    recs = list(Release(root2, ReaderConfig(meta_root=str(example_v2 / "meta"))).iter_records(0, 10, p))
    assert all(r.has_meta for r in recs) and not p.counts.get("missing_json")


def test_query_map_base_detection(example_v1, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(example_v1 / "info", root / "info")
    qmap = root / "info" / "queries_synsets_map.txt"
    pairs = _lines(qmap)
    qmap.write_text("".join(f"{q} {int(c) - 1}\n" for q, c in pairs))  # make it 0-based
    rel = Release(root, ReaderConfig(check_images="never"))
    assert rel.map_base == 0
    assert rel.query_class[int(pairs[0][0])] == int(pairs[0][1]) - 1


def test_not_a_release(tmp_path):
    with pytest.raises(ReleaseError, match="synsets.txt"):
        Release(tmp_path)


def test_salvage_truncated_list():
    text = json.dumps([{"id": 1, "title": "a"}, {"id": 2, "title": "b"}, {"id": 3}])
    assert [r["id"] for r in salvage_json_list(text[:-10])] == [1, 2]
    assert salvage_json_list("garbage") == []


@pytest.mark.parametrize("spec,kept", [("0:3", [0, 1, 2]), ([4, 1], [1, 4])])
def test_class_subset_and_sources(example_v1, spec, kept):
    """mini-WebVision's cut: the classes of the subset renumbered 0..K-1, Google images only."""
    full = Release(example_v1)
    rel = Release(example_v1, ReaderConfig(classes=spec, sources=["google"]))
    assert [c.wnid for c in rel.classes] == [full.classes[i].wnid for i in kept]
    assert [c.class_id for c in rel.classes] == list(range(len(kept)))
    files = _lines(example_v1 / "info" / "train_filelist_all.txt")
    want = [(i, p, kept.index(int(c))) for i, (p, c) in enumerate(files)
            if int(c) in kept and p.startswith("google/")]
    got = [(r.index, r.path, r.class_id) for r in rel.iter_records(0, rel.total, Problems())]
    assert got == want and want
    assert set(rel.query_class.values()) == set(range(len(kept)))
    assert all(full.query_class[q] == kept[c] for q, c in rel.query_class.items())


@pytest.mark.parametrize("spec", ["0:99", "3:3", [0, 0], [-1], "ten", "650"])
def test_bad_class_subsets_are_refused(example_v1, spec):
    from webtag.config import InvalidValue
    with pytest.raises((ReleaseError, InvalidValue), match="classes"):
        Release(example_v1, ReaderConfig(classes=spec))
