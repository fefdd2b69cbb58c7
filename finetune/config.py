"""The finetuning config: the pretraining config (same sections, same engine) plus where the
weights come from. Defaults follow the paper (docs/methods.md, "Finetuning protocol")."""
from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.loader import LoaderConfig
from pretrain.config import DataConfig, OptimConfig, PretrainConfig, TrainConfig


def _data() -> DataConfig:
    return DataConfig(target="class", holdout_shards=0, eval_batches=0)


def _optim() -> OptimConfig:
    return OptimConfig(name="sgd", lr=0.01, momentum=0.9, schedule="step", step_every=90, step_gamma=0.1)


def _loader() -> LoaderConfig:
    return LoaderConfig(batch_size=256, sampling="class")


def _train() -> TrainConfig:
    return TrainConfig(output_dir="runs/finetune", effective_batch=2048)


@dataclass
class FinetuneConfig(PretrainConfig):
    data: DataConfig = field(default_factory=_data)
    optim: OptimConfig = field(default_factory=_optim)
    loader: LoaderConfig = field(default_factory=_loader)
    train: TrainConfig = field(default_factory=_train)
    init: str = ""                 # pretrained weights: a pretraining run folder or its backbone.safetensors
    continue_from: str = ""        # large-resolution stage: a finetuning run (folder or model.safetensors)
    #                                whose whole model, head included, continues here with its LR
    #                                (init is then not used)
    eval_split: str = "val"        # the shards' split evaluated every train.eval_every steps
    keep_best: bool = True         # keep <output_dir>/best/ (whole model) of the best top-1
