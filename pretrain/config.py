"""The pretraining config: one typed dataclass per component, loaded from YAML (configs/pretrain/).

``accelerate launch pretrain/main.py --config configs/pretrain/wt.yaml key=value ...``; an
unknown key or a wrong type is an error that lists the valid keys (webtag.config).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.loader import LoaderConfig
from webtag.config import InvalidValue, above, at_least, between, check, each


@dataclass
class DataConfig:
    shards: str = ""                      # the shards folder (python -m pipeline shard --out): uses <shards>/train
    labels: str = ""                      # the text-mining output folder: vocabulary and classes size the head
    target: Literal["keywords", "weights", "class"] = "keywords"   # WT-Set: keyword ids; LW-Set: label
    #                                     weights; class: the one (web or pseudo) class label, as in finetuning
    holdout_shards: int = 1               # train shards kept out of training for precision@k (0: none)
    eval_batches: int = 50                # batches per rank per evaluation (0: the whole held-out set)

    def __post_init__(self) -> None:
        check(self, holdout_shards=at_least(0), eval_batches=at_least(0))



@dataclass
class GCNConfig:
    tau: float = 0.4                      # binary threshold on P(j | i)
    p: float = 0.2                        # re-weighting: weight of the neighbours
    variant: Literal["paper", "original"] = "paper"   # the paper's equations or the authors' code
    hidden: int = 1024                    # width of the GCN's hidden layer
    embeddings: str = "word2vec"          # word2vec: text mining's vectors; or a C x d .npy / pickle
    embedding_dim: int | None = None      # set: the label vectors must have this width (ML-GCN: 300)

    def __post_init__(self) -> None:
        check(self, tau=between(0, 1), p=between(0, 1), hidden=at_least(1), embedding_dim=at_least(1))



@dataclass
class SRNConfig:
    stage: int = 4                        # 1 main net, 2 attention + confidence, 3 f_sr, 4 all jointly
    feature_layer: str = "layer3"         # the res4 block of a ResNet (14 x 14 at 224 px)
    grid: int = 14                        # side of SRN's attention grid (the feature map at the training size)

    def __post_init__(self) -> None:
        check(self, stage=between(1, 4), grid=at_least(1))



@dataclass
class ModelConfig:
    name: str = "resnet50"                # any timm model name
    pretrained: bool = False              # timm/HF-hub weights (needs internet)
    num_classes: int | None = None        # None: sized from the data; set: must match the data
    drop_rate: float = 0.0                # dropout before the classifier
    drop_path_rate: float = 0.0           # stochastic depth rate (models that support it)
    channels_last: bool = True            # train in channels-last memory format (faster convolutions on GPUs)
    compile: bool = False                 # torch.compile the model
    compile_mode: str | None = None       # e.g. max-autotune
    pooling: Literal["default", "avg", "max", "gem"] = "default"   # default: the model's own
    gem_p: float = 3.0                    # GeM exponent (MultiGrain)
    gem_learnable: bool = False           # learn the GeM exponent
    head: Literal["linear", "gcn", "srn"] = "linear"   # gcn: ML-GCN classifier; srn: SRN
    init_weights: str = ""                # a whole model (model.safetensors) to start from, e.g. the
    #                                       previous SRN stage
    gcn: GCNConfig = field(default_factory=GCNConfig)   # options of head=gcn
    srn: SRNConfig = field(default_factory=SRNConfig)   # options of head=srn

    def __post_init__(self) -> None:
        check(self, num_classes=at_least(1), drop_rate=between(0, 1), drop_path_rate=between(0, 1), gem_p=above(0))



@dataclass
class MultiTaskConfig:
    """The slide's future work, "multi-task multi-label pretraining": beside the WT-Set head (the
    model's classifier over the keywords, data.target=keywords) an LW-Set head (a linear layer over
    the classes on the same pooled features, weighted cross entropy on the label weights);
    ``L = wt_weight * L_WT + lw_weight * L_LW``. The backbone is exported as for one head."""
    lw_weight: float = 0.0                # 0: off (one head)
    wt_weight: float = 1.0                # weight of the WT-Set (keywords) loss

    def __post_init__(self) -> None:
        check(self, lw_weight=at_least(0), wt_weight=at_least(0))


@dataclass
class LossConfig:
    name: Literal["soft_ce", "weighted_ce", "bce", "asl", "multilabel_soft_margin"] = "soft_ce"  # the training loss (docs/methods.md)
    #                                       multilabel_soft_margin: ML-GCN's (torch's MultiLabelSoftMarginLoss,
    #                                       the mean over labels; bce sums over them)
    reduction: Literal["mean", "sum"] = "mean"   # soft_ce over keywords: sum: -sum_{k in P} log softmax_k
    #                                       (the slide); mean: the same / |P| (docs/methods.md, "WT-Set")
    gamma_neg: float = 4.0                # asymmetric loss (Ridnik et al. 2021)
    gamma_pos: float = 0.0                # asymmetric loss: focusing on positives
    clip: float = 0.05                    # asymmetric loss probability margin
    margin_lambda: float | None = None    # MultiGrain: lambda * L_class + (1 - lambda) * margin loss
    #                                       on the pooled embeddings (use with loader.repeat_aug >= 2)
    margin_alpha: float = 0.2             # MultiGrain margin loss: the margin alpha
    margin_beta: float = 1.2              # initial value of the learnable beta
    margin_sampling: Literal["reference", "stable"] = "reference"   # negatives: reference: as the authors'
    #                                       code (one global max: uniform in high dimensions); stable: per row
    multitask: MultiTaskConfig = field(default_factory=MultiTaskConfig)   # WT-Set + LW-Set heads together

    def __post_init__(self) -> None:
        check(self, gamma_neg=at_least(0), gamma_pos=at_least(0), clip=between(0, 1), margin_lambda=between(0, 1),
              margin_alpha=at_least(0))
        if self.reduction == "sum" and self.name not in ("soft_ce", "weighted_ce"):
            raise InvalidValue("reduction", self.reduction, f"only soft_ce / weighted_ce over keywords sum over "
                               f"labels; {self.name} takes binary targets (use reduction=mean)")



@dataclass
class OptimConfig:
    name: Literal["sgd", "adamw"] = "sgd" # the optimizer
    lr: float = 0.1                       # for the effective batch (per device x devices x accumulation)
    momentum: float = 0.9                 # SGD momentum
    nesterov: bool = False                # SGD with Nesterov momentum
    weight_decay: float = 1e-4            # L2 weight decay
    no_decay_bias_norm: bool = True       # no weight decay on biases and normalisation weights
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999]) # AdamW betas
    schedule: Literal["cosine", "step", "constant"] = "cosine" # LR schedule after the warmup
    warmup_steps: int = 0                 # optimizer steps of linear LR warmup
    warmup_lr: float = 0.0                # LR at step 0 of the warmup (linear to lr)
    min_lr: float = 0.0                   # cosine floor
    step_every: int = 30                  # step schedule: decay every N epochs
    step_gamma: float = 0.1               # step schedule: LR factor at each decay
    clip_grad: float | None = None        # max gradient norm
    backbone_lr_scale: float = 1.0        # LR of every parameter but the head's = lr x this (ML-GCN: 0.1)
    ema_decay: float | None = None        # e.g. 0.9998: keep an EMA of the weights
    schedule_offset: int = 0              # the LR schedule starts at this step (continue an earlier run's LR)

    def __post_init__(self) -> None:
        check(self, lr=above(0), momentum=between(0, 1), weight_decay=at_least(0), betas=each(between(0, 1), 2),
              warmup_steps=at_least(0), warmup_lr=at_least(0), min_lr=at_least(0), step_every=at_least(1),
              step_gamma=between(0, 1, low_open=True), clip_grad=above(0), ema_decay=between(0, 1),
              schedule_offset=at_least(0), backbone_lr_scale=above(0))



@dataclass
class AugmentConfig:
    jitter: float = 0.4                   # colour jitter on the GPU (brightness, contrast, saturation)

    def __post_init__(self) -> None:
        check(self, jitter=at_least(0))



@dataclass
class TrainConfig:
    output_dir: str = "runs/pretrain"     # the run folder: config.yaml, metrics.csv, train.log, checkpoints, weights;
    #                                       a local path or a URL (s3://, gs://: written in stage_dir, uploaded)
    stage_dir: str = ""                   # with a URL output_dir: the local folder the run is written in first
    #                                       ("": $WEBTAG_STAGE_DIR or the temp folder, per URL; on several nodes
    #                                       a folder every rank sees)
    epochs: int = 1                       # passes over the training shards (unless max_steps)
    max_steps: int | None = None          # optimizer steps; overrides epochs
    grad_accum: int = 1                   # micro-batches per optimizer step
    effective_batch: int | None = None    # set: grad_accum = effective_batch / (batch_size x processes),
    #                                       so the effective batch stays the same on any number of devices
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16" # autocast dtype (Accelerate)
    seed: int = 0                         # seed of the model init and of every rank's RNG
    log_every: int = 20                   # optimizer steps between log lines (and the NaN / stop checks)
    stop_check_every: int = 1             # optimizer steps between stop-request checks (0: at log points only)
    eval_every: int = 1000                # optimizer steps between evaluations (0: only at the end)
    checkpoint_every: int = 1000          # optimizer steps between checkpoints (0: only at the end)
    keep_checkpoints: int = 2             # newest checkpoints kept
    resume: str = "auto"                  # auto: the newest checkpoint of output_dir (its URL's too); none; or a checkpoint folder
    precision_at: list[int] = field(default_factory=lambda: [1, 5]) # k of the held-out precision@k
    tensorboard: bool = True              # also log the metrics to <output_dir>/tensorboard
    log_with: list[str] = field(default_factory=list)   # Accelerate trackers beside metrics.csv: wandb, mlflow,
    #                                       aim, tensorboard, ... (webtag.trackers)
    tracker_project: str = "webtag"       # the trackers' project (wandb) / experiment (mlflow) name
    progress: bool = True                 # a progress bar on rank 0

    def __post_init__(self) -> None:
        check(self, epochs=at_least(1), max_steps=at_least(1), grad_accum=at_least(1), effective_batch=at_least(1),
              log_every=at_least(1), eval_every=at_least(0), checkpoint_every=at_least(0),
              keep_checkpoints=at_least(1), precision_at=each(at_least(1)))


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
