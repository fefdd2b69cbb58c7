"""The shards carry timm's ``_info.json``: timm's own WebDataset reader trains on them
(``create_dataset("wds/...", is_training=True)``); sizes.json stays for open_clip; and
loader-check takes the training configs' ``loader.key=value`` overrides."""
from __future__ import annotations

import json

import pytest
import timm.data

from interop_runs import make_shards, run_cli
from pipeline import schema


@pytest.fixture(scope="module")
def shards(example_v1, mined_v1, tmp_path_factory):
    return make_shards(example_v1, mined_v1, tmp_path_factory.mktemp("timm-shards") / "shards")


def test_info_json_lists_every_split_from_its_sizes(shards):
    info = json.loads((shards / "_info.json").read_text())
    assert set(info["splits"]) == {"train", "val"}
    for split, entry in info["splits"].items():
        sizes = schema.read_sizes(shards / split)              # kept: open_clip's sample counts
        assert entry["num_samples"] == sum(sizes.values()) and len(entry["filenames"]) == len(sizes) > 1
        assert dict(zip(entry["filenames"], entry["shard_lengths"])) == {f"{split}/{k}": v for k, v in sizes.items()}


def test_timm_reader_trains_on_the_shards(shards):
    ds = timm.data.create_dataset("wds/webtag", root=str(shards), split="train", is_training=True, batch_size=1)
    total = sum(schema.read_sizes(shards / "train").values())
    assert len(ds) == total
    targets = [int(t) for _, t in ds]
    assert len(targets) == total and min(targets) >= 0
    classes = json.loads((shards / "train" / schema.REPORT_FILE).read_text()).get("classes")
    if classes:
        assert max(targets) < classes
    val = timm.data.create_dataset("wds/webtag", root=str(shards), split="val", is_training=False)
    assert sum(1 for _ in val) == sum(schema.read_sizes(shards / "val").values())


def test_timm_info_is_rewritten_by_each_merge(shards, tmp_path):
    import shutil

    from pipeline.shards import merge_split
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    (copy / "_info.json").unlink()
    merge_split(copy, "val")
    assert json.loads((copy / "_info.json").read_text())["splits"].keys() == {"train", "val"}


@pytest.mark.parametrize("override", ["loader.batch_size=4", "batch_size=4"])
def test_loader_check_takes_the_training_namespace(shards, override):
    res = run_cli("pipeline", "loader-check", "--shards", shards, "--split", "val", override, "loader.workers=0"
                  if override.startswith("loader.") else "workers=0")
    assert "batches of 4" in res.stdout


def test_loader_check_reads_the_loader_section_of_a_training_config(shards):
    from conftest import REPO
    res = run_cli("pipeline", "loader-check", "--shards", shards, "--split", "val", "--config",
                  REPO / "configs" / "pretrain" / "example.yaml", "loader.workers=0")
    assert "batches of 16" in res.stdout     # the example's loader.batch_size
