"""Wrong pairings and half-published outputs, through the real command lines: shards of one example
with the labels of another, re-sharding into an --out of other labels, a text-mining merge killed
before its completion marker, a shard merge that failed before its marker. Each is refused with
one line naming both sides (exit 2), before anything is written."""
import json
import shutil

import pytest

from conftest import EXAMPLE_CONFIG, PRETRAIN_EXAMPLE, example_config, pretrain_overrides
from pipeline import schema
from text_mining import schema as tm

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def other_mined(tmp_path_factory, mined_v1):
    """A second example (other seed, more classes and images): its ids all fit the v1 shards, so
    only the fingerprint tells the two apart."""
    import pyarrow.parquet as pq

    from text_mining.runner import run_all
    from webvision_example import make_example
    root = tmp_path_factory.mktemp("other") / "release"
    make_example(root, classes=10, images_per_class=16, seed=11, version="1.0", images=False)
    out = root.parent / "mined"
    run_all(root, out, example_config(), workers=1, num_parts=1)
    for name in (tm.VOCABULARY_FILE, tm.CLASSES_FILE, tm.IMAGES_FILE):
        assert pq.read_metadata(out / name).num_rows >= pq.read_metadata(mined_v1 / name).num_rows
    return out


@pytest.fixture(scope="module")
def remined_v1(tmp_path_factory, example_v1):
    """The v1 release mined again with another vocabulary threshold: the same classes (so the shard
    writer's class check passes), other labels (another fingerprint)."""
    from text_mining.runner import run_all
    out = tmp_path_factory.mktemp("remined") / "mined"
    run_all(example_v1, out, example_config("vocabulary.min_df=3"), workers=1, num_parts=1)
    return out


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [l for l in err.strip().splitlines() if "ERROR" in l or l.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def _tree(folder):
    """What a folder holds, without the run locks (``.webtag-locks/``: a refused run takes the lock
    before it can see what is in the folder, webtag/lock.py)."""
    from webtag.lock import LOCK_DIR
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and LOCK_DIR not in p.relative_to(folder).parts}


def _pretrain(capsys, shards, labels, out, *extra) -> tuple[int, str]:
    from pretrain.cli import main
    capsys.readouterr()
    rc = main(["--config", str(PRETRAIN_EXAMPLE), *pretrain_overrides(shards, labels, out, "train.max_steps=1",
                                                                      "loader.image_size=32", *extra)])
    return rc, capsys.readouterr().err


def test_training_refuses_shards_of_other_labels(shards_v1, mined_v1, other_mined, tmp_path, capsys):
    rc, err = _pretrain(capsys, shards_v1, other_mined, tmp_path / "run")
    line = _one_error_line(err)
    assert rc == 2 and str(mined_v1.resolve()) in line and str(other_mined) in line and "fingerprint" in line
    assert not (tmp_path / "run").exists()
    from finetune.cli import main as finetune_main   # finetuning checks the same pairing
    rc = finetune_main(["train", "--config", str(PRETRAIN_EXAMPLE.parents[1] / "finetune" / "example.yaml"),
                        *pretrain_overrides(shards_v1, other_mined, tmp_path / "ft", "train.max_steps=1")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and str(mined_v1.resolve()) in line and str(other_mined) in line
    assert not (tmp_path / "ft").exists()


def test_shards_without_a_fingerprint_are_refused_for_training(shards_v1, mined_v1, tmp_path, capsys):
    """Shards written before fingerprints: their labels are unknown, so training refuses them
    and says to shard again."""
    old = tmp_path / "old"
    shutil.copytree(shards_v1, old)
    report = json.loads((old / "train" / schema.REPORT_FILE).read_text())
    for key in schema.LABEL_KEYS:
        del report[key]
    (old / "train" / schema.REPORT_FILE).write_text(json.dumps(report))
    rc, err = _pretrain(capsys, old, mined_v1, tmp_path / "run")
    line = _one_error_line(err)
    assert rc == 2 and "records no labels fingerprint" in line and "python -m pipeline shard" in line


def test_reshard_with_other_labels_into_an_existing_out(example_v1, shards_v1, mined_v1, remined_v1, tmp_path,
                                                        capsys):
    from pipeline.__main__ import main
    out = tmp_path / "shards"
    shutil.copytree(shards_v1, out)
    before = _tree(out)
    base = ["shard", "--webvision", str(example_v1), "--labels", str(remined_v1), "--out", str(out),
            "--workers", "1", "--num-parts", "2"]          # the part count the shards were made with
    for argv in (base, base + ["--part", "1"]):              # one machine, and one Slurm array task
        capsys.readouterr()
        assert main(argv) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert str(mined_v1.resolve()) in line and str(remined_v1.resolve()) in line
        marker = tm.read_complete(remined_v1)
        assert tm.short(marker["fingerprint"]) in line
        assert tm.short(tm.read_complete(mined_v1)["fingerprint"]) in line
        assert _tree(out) == before                           # nothing written, nothing lost
    capsys.readouterr()
    assert main(base[:4] + [str(mined_v1)] + base[5:]) == 0   # the same labels: done, a no-op
    assert _tree(out) == before


def test_killed_merge_is_refused_until_merge_finishes(example_v1, shards_v1, mined_v1, tmp_path, capsys):
    """A merge killed after images.parquet and before its report: no later stage reads the folder
    (each names what is missing); running merge again finishes it with the same fingerprint."""
    from pipeline.__main__ import main as pipeline_main
    from text_mining.__main__ import main as text_mining_main
    labels = tmp_path / "mined"
    shutil.copytree(mined_v1, labels)
    for name in ("complete.json", tm.REPORT_JSON, tm.REPORT_MD):   # (the marker is tm.COMPLETE_FILE)
        (labels / name).unlink(missing_ok=True)
    capsys.readouterr()
    assert pipeline_main(["shard", "--webvision", str(example_v1), "--labels", str(labels), "--out",
                          str(tmp_path / "s"), "--workers", "1"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(labels / "complete.json") in line and tm.REPORT_JSON in line and "text_mining merge" in line
    assert not (tmp_path / "s").exists()
    rc, err = _pretrain(capsys, shards_v1, labels, tmp_path / "run")
    assert rc == 2 and str(labels / "complete.json") in _one_error_line(err)

    assert text_mining_main(["merge", "--webvision", str(example_v1), "--out", str(labels),
                             "--config", str(EXAMPLE_CONFIG)]) == 0
    assert tm.read_complete(labels)["fingerprint"] == tm.read_complete(mined_v1)["fingerprint"]
    schema.check_labels(shards_v1 / "train", labels)          # the v1 shards pair with it again


def test_shard_merge_failing_before_its_report_leaves_no_marker(shards_v1, mined_v1, tmp_path, capsys):
    """sizes.json is written last: a split merge that fails earlier (here its report.json cannot be
    written: a folder is in the way) leaves a split that no reader takes as finished."""
    from pipeline.__main__ import main
    out = tmp_path / "shards"
    shutil.copytree(shards_v1, out)
    for name in (schema.SIZES_FILE, schema.REPORT_FILE, schema.MANIFEST_FILE):
        (out / "train" / name).unlink()
    (out / "train" / schema.REPORT_FILE).mkdir()
    capsys.readouterr()
    assert main(["shard-merge", "--out", str(out), "--split", "train"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(out / "train") in line
    assert not (out / "train" / schema.SIZES_FILE).exists()
    rc, err = _pretrain(capsys, out, mined_v1, tmp_path / "run")
    assert rc == 2 and str(out / "train" / schema.SIZES_FILE) in _one_error_line(err)


@pytest.fixture(scope="module")
def models(tmp_path_factory, mined_v1, other_mined):
    """Untrained test_resnet models whose model.json names the labels they were 'trained' on."""
    from pretrain.backbone import build_model
    from pretrain.config import ModelConfig
    from pretrain.model import save_model
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for name, labels, n in (("v1", mined_v1, 8), ("other", other_mined, 10)):
        save_model(build_model(ModelConfig(name="test_resnet"), n), folder / name,
                   {"model": "test_resnet", "num_classes": n, "target": "class", "image_size": 32,
                    "crop_pct": 0.875, "labels": str(labels.resolve())})
        out[name] = folder / name
    return out


def test_finetune_commands_refuse_other_labels(shards_v1, mined_v1, other_mined, models, tmp_path, capsys):
    from finetune.cli import main
    common = ["--shards", str(shards_v1), "--workers", "1", "--batch-size", "16", "--device", "cpu"]
    new = tmp_path / "pseudo"
    runs = [  # the v1 model on the v1 train shards, but --labels of the other example
        (["pseudo-label", "--checkpoints", str(models["v1"]), *common, "--split", "train", "--labels",
          str(other_mined), "--threshold", "0.1", "--out", str(new)], other_mined),
        # a model of the other example's classes on the v1 validation shards
        (["evaluate", "--checkpoints", str(models["other"]), *common, "--out", str(tmp_path / "e.json")], other_mined),
        (["predict", "--checkpoints", str(models["other"]), *common, "--out", str(tmp_path / "p.txt")], other_mined),
        (["ensemble", "--checkpoints", str(models["other"]), str(models["other"]), *common,
          "--out", str(tmp_path / "en.json")], other_mined),
    ]
    for argv, wrong in runs:
        capsys.readouterr()
        assert main(argv) == 2, argv[0]
        line = _one_error_line(capsys.readouterr().err)
        assert str(mined_v1.resolve()) in line and str(wrong.resolve()) in line, (argv[0], line)
    assert not new.exists() and list(tmp_path.iterdir()) == []
    # the right pairing runs, and pseudo-label's new folder is a finished labels folder of its own
    capsys.readouterr()
    assert main(["pseudo-label", "--checkpoints", str(models["v1"]), *common, "--split", "train", "--labels",
                 str(mined_v1), "--threshold", "0.1", "--out", str(new)]) == 0
    marker = tm.read_complete(new)
    assert marker["fingerprint"] != tm.read_complete(mined_v1)["fingerprint"]
    assert marker["source_fingerprint"] == tm.read_complete(mined_v1)["fingerprint"]
    assert marker["classes_fingerprint"] == tm.read_complete(mined_v1)["classes_fingerprint"]
