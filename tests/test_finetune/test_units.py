"""Finetuning pieces against their definitions: initialisation, metrics, effective batch,
pseudo-label rules, ensemble averaging."""
import json

import pyarrow.parquet as pq
import pytest
import torch

from finetune import pseudo
from finetune.init import InitError, load_backbone
from finetune.metrics import ClassificationMeter
from pretrain.config import ModelConfig, TrainConfig
from pretrain.backbone import build_model, head_prefix
from pretrain.model import save_backbone, save_model
from pretrain.trainer import accumulation_steps
from text_mining import schema as tm
from webtag.config import ConfigError


def test_backbone_loads_every_tensor_but_the_head(tmp_path):
    torch.manual_seed(0)
    pretrained = build_model(ModelConfig(name="test_resnet"), 300)   # e.g. a 300-keyword WT-Set head
    save_backbone(pretrained, tmp_path, "test_resnet")
    torch.manual_seed(1)
    model = build_model(ModelConfig(name="test_resnet"), 10)
    fresh_head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("fc.")}
    load_backbone(model, tmp_path)
    src, dst = pretrained.state_dict(), model.state_dict()
    for k in dst:
        if k.startswith(head_prefix(model) + "."):
            assert torch.equal(dst[k], fresh_head[k])          # the new head keeps its random init
        else:
            assert torch.equal(dst[k], src[k]), k               # the backbone is the pretrained one
    assert dst["fc.weight"].shape == (10, src["fc.weight"].shape[1])


def test_backbone_mismatches_are_errors_with_names(tmp_path):
    from safetensors.torch import load_file, save_file
    pretrained = build_model(ModelConfig(name="test_resnet"), 5)
    save_backbone(pretrained, tmp_path, "test_resnet")
    state = load_file(str(tmp_path / "backbone.safetensors"))
    name = sorted(state)[0]
    broken = tmp_path / "missing"
    broken.mkdir()
    save_file({k: v for k, v in state.items() if k != name}, str(broken / "backbone.safetensors"))
    with pytest.raises(InitError, match=f"missing \\['{name}'\\]"):
        load_backbone(build_model(ModelConfig(name="test_resnet"), 10), broken)
    extra = tmp_path / "extra"
    extra.mkdir()
    save_file({**state, "adapter.weight": torch.zeros(2)}, str(extra / "backbone.safetensors"))
    with pytest.raises(InitError, match="unexpected \\['adapter.weight'\\]"):
        load_backbone(build_model(ModelConfig(name="test_resnet"), 10), extra)
    other = tmp_path / "convnext"
    save_backbone(build_model(ModelConfig(name="test_convnext"), 5), other, "test_convnext")
    with pytest.raises(InitError, match="pretrained as test_convnext.*missing \\['"):
        load_backbone(build_model(ModelConfig(name="test_resnet"), 10), other)


def test_classification_metrics_on_hand_made_logits():
    m = ClassificationMeter(7)
    logits = torch.tensor([
        [9, 1, 0, 0, 0, 0, 0],    # true 0, top-1 right
        [1, 9, 0, 0, 0, 0, 0],    # true 0, predicted 1; 0 in the top 5
        [0, -1, 9, 8, 7, 6, 5],   # true 2, right
        [0, -1, 9, 8, 7, 6, 5],   # true 1: predicted 2; 1 is last, not in the top 5
    ], dtype=torch.float32)
    m.update(logits, torch.tensor([0, 0, 2, 1]))
    r = m.result()
    assert r["images"] == 4 and r["top1"] == pytest.approx(2 / 4)
    assert r["top5"] == pytest.approx(3 / 4)
    # per class: class 0 1/2, class 1 0/1, class 2 1/1 -> mean 0.5
    assert r["mean_class_acc"] == pytest.approx((0.5 + 0 + 1) / 3) and r["classes_seen"] == 3
    assert {(c["true"], c["predicted"]) for c in r["confusions"]} == {(0, 1), (1, 2)}


@pytest.mark.parametrize("processes,steps", [(1, 8), (2, 4), (4, 2), (8, 1)])
def test_effective_batch_is_the_same_on_any_number_of_devices(processes, steps):
    tc = TrainConfig(effective_batch=2048)
    assert accumulation_steps(tc, 256, processes) == steps


def test_effective_batch_that_does_not_divide_is_an_error():
    with pytest.raises(ConfigError, match="not a multiple"):
        accumulation_steps(TrainConfig(effective_batch=2048), 256, 3)
    assert accumulation_steps(TrainConfig(grad_accum=3), 256, 3) == 3


def test_pseudo_label_rules(mined_v1, shards_v1, tmp_path, monkeypatch):
    images = pq.read_table(mined_v1 / tm.IMAGES_FILE).to_pydict()
    idx, web = images["index"][:4], images["class_id"][:4]
    n_cls = pq.read_metadata(mined_v1 / tm.CLASSES_FILE).num_rows
    other = [(c + 1) % n_cls for c in web]

    def probs(rows):
        p = torch.full((len(rows), n_cls), 0.0)
        for i, (c, v) in enumerate(rows):
            p[i, c] = v
            p[i, (c + 2) % n_cls] = 1 - v
        return p

    # image 0: confident, other class -> changed; 1: confident, same class -> kept; 2: other class but
    # not confident -> kept; 3: exactly at the threshold -> changed
    fake = [(probs([(other[0], 0.9), (web[1], 0.95), (other[2], 0.6), (other[3], 0.8)]),
             {"index": torch.tensor(idx), "class_id": torch.tensor(web)})]
    monkeypatch.setattr(pseudo, "ensemble_batches", lambda *a, **k: iter(fake))
    train = shards_v1 / "train"   # the shards made from mined_v1 (their pairing is checked)
    report = pseudo.pseudo_label([], train, mined_v1, 0.8, tmp_path / "pl", checkpoints=["a", "b"])
    assert (report["confident"], report["changed"]) == (3, 2)
    new = pq.read_table(tmp_path / "pl" / tm.IMAGES_FILE)
    assert new.schema.remove_metadata() == pq.read_table(mined_v1 / tm.IMAGES_FILE).schema.remove_metadata()
    got = new.to_pydict()
    assert got["class_id"][:4] == [other[0], web[1], web[2], other[3]]
    assert got["class_id"][4:] == images["class_id"][4:]
    assert got["keyword_ids"] == images["keyword_ids"] and got["label_weights"] == images["label_weights"]
    for name in (tm.VOCABULARY_FILE, tm.CLASSES_FILE):
        assert (tmp_path / "pl" / name).read_bytes() == (mined_v1 / name).read_bytes()
    assert json.loads((tmp_path / "pl" / pseudo.REPORT).read_text())["changed"] == 2
    with pytest.raises(FileExistsError):   # never overwrites a labels folder
        pseudo.pseudo_label([], train, mined_v1, 0.8, tmp_path / "pl")
    with pytest.raises(ValueError, match="threshold"):
        pseudo.pseudo_label([], train, mined_v1, 1.5, tmp_path / "pl2")


def test_ensemble_averages_the_models_probabilities(shards_v1, tmp_path):
    from finetune.infer import ensemble_batches, load_models
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(ModelConfig(name="test_resnet"), 8).eval()
        save_model(model, tmp_path / f"m{seed}", {"model": "test_resnet", "num_classes": 8, "image_size": 48,
                                                   "crop_pct": 0.875})
        paths.append(str(tmp_path / f"m{seed}"))
    models = load_models(paths, "cpu")
    single = [torch.cat([p for p, _ in ensemble_batches([m], shards_v1 / "val", batch_size=8, workers=1)])
              for m in models]
    both = torch.cat([p for p, _ in ensemble_batches(models, shards_v1 / "val", batch_size=8, workers=1)])
    assert both.shape == single[0].shape and not torch.allclose(single[0], single[1])
    assert torch.allclose(both, (single[0] + single[1]) / 2, atol=1e-6)
    assert torch.allclose(both.sum(dim=1), torch.ones(len(both)), atol=1e-5)


def test_submission_and_write_json_keep_the_old_file_when_writing_fails(tmp_path):
    """A submission or report half written (killed, or failing mid-way) leaves the previous file
    and no leftover beside it (webtag.atomic)."""
    from finetune import infer
    from finetune.submission import write_submission
    out = tmp_path / "pred" / "submission.txt"
    out.parent.mkdir()
    out.write_text("old\n")
    with pytest.raises(KeyError):   # no name for the second image: fails after the first line
        write_submission(out, {0: "val000001.jpg"}, {0: [1, 0], 1: [0, 1]})
    assert out.read_text() == "old\n" and [p.name for p in out.parent.iterdir()] == ["submission.txt"]
    infer.write_json(tmp_path / "new" / "r.json", {"a": 1})
    assert json.loads((tmp_path / "new" / "r.json").read_text()) == {"a": 1}
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["r.json"]


@pytest.mark.parametrize("command", [["evaluate", "--checkpoint", "RUN"], ["predict", "--checkpoint", "RUN", "--out", "x"],
                                     ["pseudo-label", "--checkpoints", "RUN", "--labels", "L", "--threshold", "0.5",
                                      "--out", "x"], ["ensemble", "--checkpoints", "RUN"],
                                     ["retrieve", "--checkpoint", "RUN", "--queries", "val", "--gallery", "val"]])
def test_shards_is_the_root_and_a_split_folder_is_refused(command, shards_v1, capsys):
    """--shards is the shards root (as data.shards); a split folder there is exit 2 with what to pass."""
    from finetune.cli import main
    split = "train" if command[0] == "pseudo-label" else "val"
    flag = "--queries" if command[0] == "retrieve" else "--split"
    assert main([*command, "--shards", str(shards_v1 / split)]) == 2
    err = capsys.readouterr().err
    assert f"pass the shards root and the split, --shards {shards_v1} {flag} {split}" in err
    assert len(err.strip().splitlines()) == 1
    # a split the shards do not have (they hold train, val and test): refused before the model loads
    missing = ([a.replace("val", "imagenet_val") for a in command] if command[0] == "retrieve"
               else [*command, "--split", "imagenet_val"])
    assert main([*missing, "--shards", str(shards_v1)]) == 2
    assert "no finished split 'imagenet_val'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "predict", "pseudo-label", "ensemble"])
def test_checkpoints_is_one_option_with_checkpoint_as_its_alias(command, capsys):
    from finetune.cli import build_parser
    ap = build_parser()
    rest = ["--shards", "S", "--out", "o", "--labels", "L", "--threshold", "0.5"]
    rest = rest[:{"evaluate": 2, "ensemble": 2, "predict": 4, "pseudo-label": 8}[command]]
    for flag in ("--checkpoints", "--checkpoint"):
        assert ap.parse_args([command, flag, "A", "B", *rest]).checkpoints == ["A", "B"]
    with pytest.raises(SystemExit):
        ap.parse_args([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"usage: python -m finetune {command} [-h] --checkpoints PATH [PATH ...]" in help_text
    assert "(--checkpoint is the same option)" in help_text


def test_finetune_train_help_is_the_finetuning_stages(capsys):
    from finetune.cli import main
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "usage: accelerate launch finetune/main.py" in out and "Command line of the finetuning stage" in out
