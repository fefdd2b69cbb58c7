"""Finished runs are model folders timm loads as they are (config.json + model.safetensors with
webtag's metadata), their saved descriptions hold no absolute path, and ``python -m finetune
export`` writes a folder with a model card that timm loads too."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import timm
import torch
from safetensors import safe_open

from interop_runs import run_cli, runs  # noqa: F401  (the session fixture)
from pretrain.model import load_model, read_model_info
from text_mining import schema as tm


def _same_outputs(timm_model, ours, size: int) -> None:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(timm_model.eval()(x), ours.eval()(x), atol=1e-5)


def _metadata(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata()


@pytest.mark.parametrize("which", ["pretrain", "finetune", "best"])
def test_timm_loads_every_finished_model_folder(runs, which):
    folder = runs[which]
    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    ours, info = load_model(folder)
    assert model.num_classes == info["num_classes"]
    _same_outputs(model, ours, info["image_size"])
    backbone = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0)
    with torch.no_grad():
        features = backbone.eval()(torch.zeros(1, 3, 64, 64))
    assert features.shape == (1, backbone.num_features)
    # the backbone's weights are the trained ones, not a fresh init
    mine = ours.state_dict()
    assert backbone.state_dict() and all(torch.equal(v, mine[k]) for k, v in backbone.state_dict().items())


def test_config_json_has_the_eval_transform_and_the_label_names(runs):
    cfg = json.loads((runs["best"] / "config.json").read_text())
    classes = pq.read_table(runs["labels"] / tm.CLASSES_FILE).to_pydict()
    assert cfg["architecture"] == "test_resnet" and cfg["num_classes"] == len(classes["wnid"])
    assert cfg["label_names"] == [w for _, w in sorted(zip(classes["class_id"], classes["wnid"]))]
    pc = cfg["pretrained_cfg"]
    assert pc["input_size"] == [3, 64, 64] and pc["crop_pct"] == 0.875 and pc["interpolation"] == "bilinear"
    assert pc["mean"] == [0.485, 0.456, 0.406] and pc["std"] == [0.229, 0.224, 0.225]
    data_cfg = timm.data.resolve_data_config({}, model=timm.create_model(f"local-dir:{runs['best']}"))
    assert tuple(data_cfg["input_size"]) == (3, 64, 64) and data_cfg["crop_pct"] == 0.875
    vocab = pq.read_table(runs["labels"] / tm.VOCABULARY_FILE).to_pydict()
    pt_cfg = json.loads((runs["pretrain"] / "config.json").read_text())
    assert pt_cfg["label_names"] == [k for _, k in sorted(zip(vocab["id"], vocab["keyword"]))]


def test_safetensors_metadata_names_version_run_step_and_data(runs):
    fingerprint = tm.read_complete(runs["labels"])["fingerprint"]
    for folder, run in ((runs["pretrain"], "pretrain"), (runs["best"], "finetune")):
        meta = _metadata(folder / "model.safetensors")
        assert meta["webtag_version"] and meta["run"] == run and meta["model"] == "test_resnet"
        assert meta["labels_fingerprint"] == fingerprint
        assert int(meta["step"]) == read_model_info(folder)["step"]
    assert _metadata(runs["pretrain"] / "backbone.safetensors")["labels_fingerprint"] == fingerprint


def _strings(doc):
    if isinstance(doc, dict):
        for v in doc.values():
            yield from _strings(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _strings(v)
    elif isinstance(doc, str):
        yield doc


def test_no_absolute_path_in_saved_metadata(runs):
    root = str(runs["pretrain"].parent)
    files = [f for name in ("pretrain", "finetune", "best") for f in runs[name].glob("*.json")]
    assert {f.name for f in files} >= {"model.json", "config.json", "backbone.json", "finished.json"}
    for f in files:
        for s in _strings(json.loads(f.read_text())):
            assert not s.startswith("/") and root not in s, (f, s)
    for f in (runs["pretrain"] / "model.safetensors", runs["best"] / "model.safetensors"):
        for s in _metadata(f).values():
            assert not s.startswith("/") and root not in s, (f, s)
    # the relative labels path still leads to the labels folder
    assert Path(read_model_info(runs["best"])["labels"]) == runs["labels"].resolve()
    assert not Path(json.loads((runs["best"] / "model.json").read_text())["labels"]).is_absolute()


def test_export_writes_a_timm_folder_with_a_model_card(runs, tmp_path):
    out = tmp_path / "export"
    res = run_cli("finetune", "export", "--checkpoint", runs["best"], "--out", out)
    assert f"local-dir:{out}" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.json", "model.safetensors"]
    model = timm.create_model(f"local-dir:{out}", pretrained=True)
    _same_outputs(model, load_model(runs["best"])[0], 64)
    card = (out / "README.md").read_text()
    info = read_model_info(runs["best"])
    assert card.startswith("---\nlibrary_name: timm")
    assert f"val_top1 {info['val_top1']:.4g}" in card                 # the run's own figures
    assert tm.read_complete(runs["labels"])["fingerprint"] in card     # the data it was trained on
    assert "optimizer `sgd`, lr 0.05" in card                          # the recipe, from config.yaml
    for s in _strings(json.loads((out / "model.json").read_text())):
        assert not s.startswith("/")
    assert Path(read_model_info(out)["labels"]) == runs["labels"].resolve()


def test_export_refuses_an_existing_folder_and_a_non_run(runs, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    res = run_cli("finetune", "export", "--checkpoint", runs["best"], "--out", taken, check=False)
    assert res.returncode == 2 and "already exists" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("finetune", "export", "--checkpoint", tmp_path, "--out", tmp_path / "x", check=False)
    assert res.returncode == 2 and "no model.safetensors" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()
    res = run_cli("finetune", "export", "--checkpoint", "s3://bucket/runs/ft", "--out", tmp_path / "y", check=False)
    assert res.returncode == 2 and "export reads a local run folder" in res.stderr and "Traceback" not in res.stderr
