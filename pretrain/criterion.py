"""The training criterion, built from the ``loss`` config: what the trainer calls on a batch.

``criterion(logits, targets, batch) -> loss``. The plain criterion is one of :mod:`.losses`
(soft_ce, weighted_ce, bce, asl). With ``loss.margin_lambda`` it is MultiGrain's joint loss
(:mod:`.multigrain`): ``lambda * L_class + (1 - lambda) * L_margin``, the margin loss on the
classifier's input (the pooled embedding), with the copies of one image (``loader.repeat_aug``,
the same batch ``index``) as positives. The embedding is captured by a forward pre-hook on the
model's classifier, which the criterion attaches itself: the trainer knows no method. With
``loss.multitask.lw_weight`` an LW-Set head is trained beside the WT-Set one (:class:`MultiTaskCriterion`).
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from pipeline.loader import LoaderConfig
from webtag.config import ConfigError

from .backbone import head_prefix
from .config import LossConfig
from .losses import SoftTargetCrossEntropy, batch_targets, build_loss
from .multigrain import MarginLoss, joint_loss

log = logging.getLogger(__name__)


class Criterion(nn.Module):
    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, batch: dict | None = None) -> torch.Tensor:
        return self.loss(logits, targets)

    def checkpointed(self) -> list[nn.Module]:
        """Parts with state of their own (learnable parameters) for the checkpoint."""
        return []

    def learned(self) -> dict[str, float]:
        """Learned scalars worth a log line (MultiGrain's beta)."""
        return {}


class MultiGrainCriterion(Criterion):
    def __init__(self, loss: nn.Module, model: nn.Module, cfg: LossConfig):
        super().__init__(loss)
        self.margin = MarginLoss(cfg.margin_alpha, cfg.margin_beta, sampling=cfg.margin_sampling)
        self.lam = cfg.margin_lambda
        self._embedding: torch.Tensor | None = None
        model.get_submodule(head_prefix(model)).register_forward_pre_hook(self._capture)

    def _capture(self, module, args) -> None:
        self._embedding = args[0]

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, batch: dict | None = None) -> torch.Tensor:
        embedding, self._embedding = self._embedding, None
        if embedding is None or batch is None:
            raise RuntimeError("MultiGrain criterion: no embedding captured (call it after the model's forward, with the batch)")
        retrieval = self.margin(embedding, batch["index"].to(embedding.device))
        return joint_loss(self.loss(logits, targets), retrieval, self.lam)

    def checkpointed(self) -> list[nn.Module]:
        return [self.margin]

    def learned(self) -> dict[str, float]:
        beta = self.margin.beta
        return {"margin_beta": float(beta.detach())} if isinstance(beta, torch.Tensor) else {}


class MultiTaskCriterion(Criterion):
    """``wt_weight * inner + lw_weight * L_LW``: ``inner`` is the WT-Set criterion on the model's
    logits (keywords); the LW-Set head, a linear layer over the classes, reads the classifier's
    input (the pooled features, captured by a forward pre-hook) and is trained with the weighted
    cross entropy on the label weights. The head lives here, not in the model, so that the model,
    its backbone file and finetuning stay as with one head; its gradients are averaged over the
    ranks by the trainer with the criterion's other parameters, and it is checkpointed."""

    def __init__(self, inner: Criterion, model: nn.Module, num_classes: int, cfg: LossConfig):
        super().__init__(inner.loss)
        self.inner, self.num_classes = inner, num_classes
        self.wt_weight, self.lw_weight = cfg.multitask.wt_weight, cfg.multitask.lw_weight
        features = getattr(model, "num_features", None) or model.get_submodule(head_prefix(model)).in_features
        self.lw_head = nn.Linear(features, num_classes)
        self.lw_loss = SoftTargetCrossEntropy()
        self._embedding: torch.Tensor | None = None
        model.get_submodule(head_prefix(model)).register_forward_pre_hook(self._capture)

    def _capture(self, module, args) -> None:
        self._embedding = args[0]

    def lw_logits(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.lw_head(embedding.flatten(1))

    def parts(self, logits: torch.Tensor, targets: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(the WT-Set criterion, the LW-Set loss) of a batch, after the model's forward."""
        embedding, self._embedding = self._embedding, None
        if embedding is None or batch is None:
            raise RuntimeError("multi-task criterion: no features captured (call it after the model's forward, with the batch)")
        lw_targets = batch_targets(batch, "weights", self.num_classes, embedding.device)
        return self.inner(logits, targets, batch), self.lw_loss(self.lw_logits(embedding), lw_targets)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, batch: dict | None = None) -> torch.Tensor:
        wt, lw = self.parts(logits, targets, batch)
        return self.wt_weight * wt + self.lw_weight * lw

    def checkpointed(self) -> list[nn.Module]:
        return [*self.inner.checkpointed(), self.lw_head]

    def learned(self) -> dict[str, float]:
        return self.inner.learned()


def build_criterion(cfg: LossConfig, model: nn.Module, loader: LoaderConfig, target: str = "keywords",
                    num_classes: int | None = None, head: str = "linear") -> Criterion:
    """The criterion of ``cfg`` for ``model`` (the bare model, before any wrapper); ``num_classes``
    sizes the multi-task LW-Set head."""
    loss = build_loss(cfg)
    if cfg.margin_lambda is None:
        criterion = Criterion(loss)
    else:
        if loader.repeat_aug < 2:
            log.warning("loss.margin_lambda without loader.repeat_aug >= 2: a batch holds no positive pairs")
        criterion = MultiGrainCriterion(loss, model, cfg)
    if cfg.multitask.lw_weight == 0:
        return criterion
    if target != "keywords" or head != "linear" or num_classes is None:
        raise ConfigError(f"loss.multitask.lw_weight={cfg.multitask.lw_weight}: multi-task pretraining puts the "
                          f"LW-Set head beside the WT-Set one: it needs data.target=keywords and model.head=linear "
                          f"(got {target}, {head})")
    return MultiTaskCriterion(criterion, model, num_classes, cfg)
