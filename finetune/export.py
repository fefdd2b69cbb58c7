"""``python -m finetune export``: a finished run as a model folder for timm and the Hugging Face Hub.

    python -m finetune export --checkpoint RUN[/best] --out DIR [--push-to-hub USER/REPO]

DIR gets ``model.safetensors`` (the whole model, with webtag's metadata), timm's ``config.json``
(``timm.create_model("local-dir:DIR", pretrained=True)``), ``model.json`` (webtag's description,
its labels path relative to DIR) and a model card ``README.md``: the data (the labels' name and
fingerprint), the recipe (from the run's config.yaml) and the metrics (the run's evaluations).
DIR must not exist; it appears complete or not at all. ``--push-to-hub`` then uploads DIR with
huggingface_hub (``huggingface-cli login`` first, or HF_TOKEN). Exit status: 0 done, 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import yaml

from webtag.atomic import atomic_dir, write_text_atomic
from webtag.model_folder import CONFIG_JSON, NotTimmLoadable, label_names, portable_info, safetensors_metadata, \
    timm_config

log = logging.getLogger("finetune")
RUN_FILES = ("config.yaml", "finished.json", "metrics.csv")


class ExportError(ValueError):
    """A checkpoint that cannot be exported (not a finished run, or not a plain timm model)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="a finished run folder (pretraining or finetuning), its best/ folder, or its model.safetensors")
    p.add_argument("--out", required=True, metavar="DIR", help="the model folder to write (must not exist)")
    p.add_argument("--push-to-hub", metavar="REPO", default=None,
                   help="also upload DIR to this Hugging Face Hub model repository (USER/NAME), created if missing")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")


def _model_folder(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def _run_folder(model_dir: Path) -> Path:
    """The run a model folder belongs to: best/ lies inside its run."""
    return model_dir.parent if model_dir.name == "best" and (model_dir.parent / "config.yaml").is_file() else model_dir


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError as exc:
        raise ExportError(f"{path}: not valid JSON ({exc})") from None


def run_results(model_dir: Path) -> dict[str, dict]:
    """The figures a run recorded: model.json's validation figures, finished.json's last metrics
    and each eval-*.json / retrieval.json of the model folder (their numbers only)."""
    results: dict[str, dict] = {}
    info = _read_json(model_dir / "model.json")
    val = {k: info[k] for k in ("val_top1", "val_top5", "val_mean_class_acc") if isinstance(info.get(k), (int, float))}
    if val:
        results[f"validation at step {info.get('step')}"] = val
    finished = _read_json(_run_folder(model_dir) / "finished.json")
    last = {k: v for k, v in (finished.get("last_metrics") or {}).items() if k not in ("epoch",)}
    if last:
        results[f"last logged (step {finished.get('step')})"] = last
    for f in sorted([*model_dir.glob("eval-*.json"), *model_dir.glob("retrieval.json")]):
        doc = _read_json(f)
        numbers = {k: v for k, v in doc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numbers:
            results[f.name] = numbers
    return results


def _recipe(run_cfg: dict) -> list[str]:
    def get(section: str, key: str):
        return (run_cfg.get(section) or {}).get(key)
    lines = []
    if run_cfg:
        lines += [f"- target: `{get('data', 'target')}`, loss `{get('loss', 'name')}`",
                  f"- optimizer `{get('optim', 'name')}`, lr {get('optim', 'lr')}, schedule `{get('optim', 'schedule')}`, "
                  f"weight decay {get('optim', 'weight_decay')}",
                  f"- batch {get('loader', 'batch_size')} per device, effective batch "
                  f"{get('train', 'effective_batch') or 'batch x devices x ' + str(get('train', 'grad_accum'))}, "
                  f"image size {get('loader', 'image_size')}, sampling `{get('loader', 'sampling')}`",
                  f"- epochs {get('train', 'epochs')}, max steps {get('train', 'max_steps')}, "
                  f"mixed precision `{get('train', 'mixed_precision')}`, seed {get('train', 'seed')}"]
        if run_cfg.get("init"):
            lines.append(f"- finetuned from the pretrained run `{Path(str(run_cfg['init'])).name}`")
    return lines


def model_card(info: dict, cfg: dict, run_cfg: dict, results: dict[str, dict], repo: str | None) -> str:
    """README.md of the exported folder: Hub front matter, data, recipe, metrics, how to load it."""
    pc = cfg["pretrained_cfg"]
    name = repo or "DIR"
    load = f'"hf-hub:{repo}"' if repo else '"local-dir:DIR"'
    lines = ["---", "library_name: timm", "license: apache-2.0",
             "tags:", "- image-classification", "- timm", "- webtag", "---", "",
             f"# {name}: {info['model']} ({info.get('target')}, {info['num_classes']} outputs)", "",
             f"Trained with webtag {info.get('webtag_version')} (run `{info.get('run')}`, step {info.get('step')}).", "",
             "## Data", "",
             f"- labels: `{info.get('labels_name')}`, fingerprint `{info.get('labels_fingerprint')}` "
             f"(class list `{info.get('classes_fingerprint')}`)",
             f"- shards: `{Path(str((run_cfg.get('data') or {}).get('shards', ''))).name}`",
             f"- input: {pc['input_size'][1]} px, centre crop {pc['crop_pct']}, {pc['interpolation']}, "
             f"mean {pc['mean']}, std {pc['std']}", "", "## Recipe", ""]
    lines += _recipe(run_cfg) or ["- (the run's config.yaml was not found)"]
    lines += ["", "## Metrics", ""]
    if results:
        for where, figures in results.items():
            lines.append(f"- {where}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in figures.items()))
    else:
        lines.append("- no evaluation was recorded for this run")
    lines += ["", "## Use", "", "```python", "import timm",
              f"model = timm.create_model({load}, pretrained=True)",
              f"backbone = timm.create_model({load}, pretrained=True, num_classes=0)   # features",
              "cfg = timm.data.resolve_data_config({}, model=model)",
              "transform = timm.data.create_transform(**cfg)", "```", ""]
    return "\n".join(lines)


def export(checkpoint: str | Path, out: str | Path, repo: str | None = None) -> Path:
    """Write the model folder ``out`` from ``checkpoint``; returns ``out``."""
    from safetensors.torch import load_file, save_file

    from pretrain.model import MODEL_INFO, MODEL_WEIGHTS, read_model_info
    from webtag.storage import is_url
    if is_url(checkpoint):   # the card reads the whole run folder (config, results): a local copy is needed
        raise ExportError(f"--checkpoint {checkpoint}: export reads a local run folder; copy it first "
                          "(e.g. `aws s3 sync URL DIR`, or evaluate/predict, which take the URL)")
    src = _model_folder(Path(checkpoint))
    weights, info = src / MODEL_WEIGHTS, read_model_info(src)
    if not weights.is_file() or info is None:
        raise ExportError(f"--checkpoint {checkpoint}: no {MODEL_WEIGHTS} with {MODEL_INFO} (a finished run folder, "
                          "its best/ folder, or their model.safetensors)")
    out = Path(out)
    if out.exists():
        raise ExportError(f"--out {out} already exists: give a new folder")
    run_cfg = {}
    cfg_file = _run_folder(src) / "config.yaml"
    if cfg_file.is_file():
        run_cfg = yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}
    with atomic_dir(out) as tmp:
        saved = portable_info(info, out)   # paths relative to where the folder will be
        saved.setdefault("run", _run_folder(src).name)
        labels = info.get("labels")
        names, descriptions = (label_names(labels, info.get("target", "class"), int(info["num_classes"]))
                               if labels else ([], {}))
        try:
            features = _read_json(src / CONFIG_JSON).get("num_features") or _read_json(
                _run_folder(src) / "backbone.json").get("num_features")
            cfg = timm_config(saved, features, _classifier(info["model"]), names, descriptions)
        except NotTimmLoadable as exc:
            raise ExportError(f"--checkpoint {checkpoint}: {exc}") from None
        save_file(load_file(str(weights)), str(tmp / MODEL_WEIGHTS), metadata=safetensors_metadata(saved))
        write_text_atomic(tmp / CONFIG_JSON, json.dumps(cfg, indent=2) + "\n")
        write_text_atomic(tmp / MODEL_INFO, json.dumps(saved, indent=2) + "\n")
        write_text_atomic(tmp / "README.md", model_card(saved, cfg, run_cfg, run_results(src), repo))
    return out


def _classifier(model_name: str) -> str:
    """The state-dict prefix of the model's last linear layer, as timm names it."""
    from timm.models import get_pretrained_cfg_value
    name = get_pretrained_cfg_value(model_name, "classifier")
    return name[0] if isinstance(name, (list, tuple)) else (name or "")


def push(folder: Path, repo: str, private: bool = False) -> str:
    """Upload ``folder`` to the Hub model repository ``repo`` (created if missing); returns its URL."""
    from huggingface_hub import HfApi
    api = HfApi()
    api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                      commit_message=f"webtag export of {json.loads((folder / 'model.json').read_text())['run']}")
    return f"https://huggingface.co/{repo}"


def main(args: argparse.Namespace) -> int:
    try:
        out = export(args.checkpoint, args.out, args.push_to_hub)
    except (ExportError, FileExistsError) as exc:
        log.error("%s", exc)
        return 2
    print(f"exported {args.checkpoint} -> {out} (timm: local-dir:{out})")
    if args.push_to_hub:
        try:
            url = push(out, args.push_to_hub, args.private)
        except Exception as exc:   # network, login, permissions: one line, the folder stays
            log.error("--push-to-hub %s: %s: %s (the folder %s is complete; push it later with "
                      "`huggingface-cli upload %s %s`)", args.push_to_hub, type(exc).__name__,
                      str(exc).splitlines()[0] if str(exc) else "", out, args.push_to_hub, out)
            return 2
        print(f"pushed to {url}")
    return 0
