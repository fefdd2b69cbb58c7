"""A finished model folder in the format timm and the Hugging Face Hub load as it is.

Beside ``model.safetensors`` (the whole model, timm's own parameter names) a folder gets:

- ``config.json``: timm's model config (``architecture``, ``num_classes``, ``num_features``,
  ``label_names`` / ``label_descriptions`` and ``pretrained_cfg`` with the eval transform: mean,
  std, input size, crop, interpolation), the file ``timm.create_model("local-dir:DIR")`` reads;
- safetensors metadata: webtag's version, the run's name, the step and the labels' fingerprint;
- portable descriptions (model.json, backbone.json): the labels folder recorded relative to the
  model folder, with its name and fingerprints, never as an absolute path of the training machine.

A model that plain timm cannot rebuild (an ML-GCN or SRN head, GeM pooling) gets no config.json:
:func:`timm_config` says why (:class:`NotTimmLoadable`).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from webtag import __version__
from webtag.atomic import write_text_atomic

log = logging.getLogger(__name__)
CONFIG_JSON = "config.json"
# what the training loader does to an image (pipeline.loader: GpuAugment and the PIL eval crop)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
INTERPOLATION = "bilinear"
_TIMM_POOLING = {"default": None, "avg": "avg", "max": "max"}


class NotTimmLoadable(ValueError):
    """A model whose weights plain timm cannot rebuild (its head or pooling is webtag's own)."""


def run_name(info: dict, folder: str | Path) -> str:
    """The run a model folder belongs to: the run folder's name (``best/`` is inside its run)."""
    folder = Path(folder).resolve()
    return info.get("run") or (folder.parent.name if folder.name in ("best", "ema") else folder.name)


def labels_identity(labels_dir: str | Path) -> dict:
    """The labels folder as a name and fingerprints (from its complete.json; empty if unfinished)."""
    from text_mining import schema as tm
    out = {"labels_name": Path(labels_dir).resolve().name}
    try:
        marker = tm.read_complete(labels_dir)
    except tm.LabelsError:
        return out
    out.update(labels_fingerprint=marker["fingerprint"], classes_fingerprint=marker.get("classes_fingerprint"))
    return out


def _relative(path: str, folder: Path) -> str:
    return os.path.relpath(path, folder) if os.path.isabs(path) else path


def _absolute(path: str, folder: Path) -> str:
    return path if os.path.isabs(path) else os.path.normpath(folder / path)


def _paths(info: dict, folder: Path, how) -> dict:
    """``info`` with its file paths (``labels``, and model_config's ``init_weights`` and a GCN
    embeddings file) passed through ``how``."""
    out = dict(info)
    if out.get("labels"):
        out["labels"] = how(out["labels"], folder)
    mc = out.get("model_config")
    if isinstance(mc, dict):
        mc = out["model_config"] = dict(mc)
        if mc.get("init_weights"):
            mc["init_weights"] = how(mc["init_weights"], folder)
        gcn = mc.get("gcn")
        if isinstance(gcn, dict) and gcn.get("embeddings") not in (None, "", "word2vec"):
            mc["gcn"] = {**gcn, "embeddings": how(gcn["embeddings"], folder)}
    return out


def portable_info(info: dict, folder: str | Path) -> dict:
    """``info`` as saved in ``folder``: its paths (absolute, or already relative to ``folder``)
    relative to the folder, plus the labels' name and fingerprints, the run's name and webtag's
    version. Idempotent."""
    folder = Path(folder).resolve()
    out = _paths(info, folder, _absolute)
    if out.get("labels") and "labels_name" not in out:
        out.update(labels_identity(out["labels"]))
    out = _paths(out, folder, _relative)
    out["run"] = run_name(out, folder)
    out["webtag_version"] = __version__
    return out


def resolve_info(info: dict, folder: str | Path) -> dict:
    """A saved description with its paths usable again (they are relative to ``folder``)."""
    return _paths(info, Path(folder).resolve(), _absolute)


def safetensors_metadata(info: dict) -> dict[str, str]:
    """The metadata written into model.safetensors / backbone.safetensors (strings only)."""
    meta = {"format": "pt", "model": str(info.get("model")), "webtag_version": __version__}
    for key in ("run", "step", "target", "num_classes", "labels_name", "labels_fingerprint", "classes_fingerprint"):
        if info.get(key) is not None:
            meta[key] = str(info[key])
    return meta


def label_names(labels_dir: str | Path, target: str, num_classes: int) -> tuple[list[str], dict[str, str]]:
    """The head's labels as timm names them: (names by output index, descriptions by name).
    Classes: WordNet ids and their synset's first word; keywords: the vocabulary. Empty when
    the labels folder is not here or its size differs from the head."""
    import pyarrow.parquet as pq

    from text_mining import schema as tm
    folder = Path(labels_dir)
    if target == "keywords":
        path = folder / tm.VOCABULARY_FILE
        if not path.is_file():
            return [], {}
        t = pq.read_table(path, columns=["id", "keyword"]).to_pydict()
        names = [""] * len(t["id"])
        for i, k in zip(t["id"], t["keyword"]):
            names[i] = k
        return (names, {}) if len(names) == num_classes else ([], {})
    path = folder / tm.CLASSES_FILE
    if not path.is_file():
        return [], {}
    t = pq.read_table(path, columns=["class_id", "wnid", "name"]).to_pydict()
    names = [""] * len(t["class_id"])
    for i, w in zip(t["class_id"], t["wnid"]):
        names[i] = w
    if len(names) != num_classes:
        return [], {}
    return names, dict(zip(t["wnid"], t["name"]))


def timm_config(info: dict, num_features: int | None, classifier: str,
                names: list[str] | None = None, descriptions: dict | None = None) -> dict:
    """timm's config.json for a model described by ``info`` (model.json's fields)."""
    mc = info.get("model_config") or {}
    head, pooling = mc.get("head", "linear"), mc.get("pooling", "default")
    if head != "linear" or pooling not in _TIMM_POOLING:
        raise NotTimmLoadable(f"model.head={head}, model.pooling={pooling}: plain timm cannot rebuild this model "
                              "(only head=linear with pooling default, avg or max)")
    size = int(info["image_size"])
    num_classes = int(info["num_classes"])
    pretrained_cfg = {
        "input_size": [3, size, size], "interpolation": INTERPOLATION, "crop_pct": float(info.get("crop_pct", 0.875)),
        "crop_mode": "center", "mean": list(MEAN), "std": list(STD), "num_classes": num_classes,
        "classifier": classifier, "fixed_input_size": False,
        "license": "apache-2.0", "description": f"webtag {info.get('target', '')} model, run {info.get('run', '')}",
    }
    cfg: dict = {"architecture": info["model"], "num_classes": num_classes, "num_features": num_features}
    model_args = {}
    if _TIMM_POOLING[pooling]:
        cfg["global_pool"] = model_args["global_pool"] = _TIMM_POOLING[pooling]
    if model_args:
        cfg["model_args"] = model_args
    if names:
        cfg["label_names"] = names
    if descriptions:
        cfg["label_descriptions"] = descriptions
    cfg["pretrained_cfg"] = pretrained_cfg
    return cfg


def write_timm_config(folder: str | Path, info: dict, num_features: int | None, classifier: str) -> Path | None:
    """Write ``folder/config.json`` for the whole model saved there (``info``: its model.json,
    ``labels`` as saved: relative to the folder). A model timm cannot rebuild gets none (logged)."""
    folder = Path(folder)
    labels = resolve_info(info, folder).get("labels")
    names, descriptions = (label_names(labels, info.get("target", "class"), int(info["num_classes"]))
                           if labels else ([], {}))
    try:
        cfg = timm_config(info, num_features, classifier, names, descriptions)
    except NotTimmLoadable as exc:
        log.info("%s: no %s: %s", folder, CONFIG_JSON, exc)
        stale = folder / CONFIG_JSON
        if stale.is_file():
            stale.unlink()
        return None
    path = folder / CONFIG_JSON
    write_text_atomic(path, json.dumps(cfg, indent=2) + "\n")
    return path
