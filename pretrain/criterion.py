"""The training criterion, built from the ``loss`` config: what the trainer calls on a batch.

``criterion(logits, targets, batch) -> loss``. The plain criterion is one of :mod:`.losses`
(soft_ce, weighted_ce, bce, asl). With ``loss.margin_lambda`` it is MultiGrain's joint loss
(:mod:`.multigrain`): ``lambda * L_class + (1 - lambda) * L_margin``, the margin loss on the
classifier's input (the pooled embedding), with the copies of one image (``loader.repeat_aug``,
the same batch ``index``) as positives. The embedding is captured by a forward pre-hook on the
model's classifier, which the criterion attaches itself: the trainer knows no method.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from pipeline.loader import LoaderConfig

from .backbone import head_prefix
from .config import LossConfig
from .losses import build_loss
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
        return {"margin_beta": float(beta)} if isinstance(beta, torch.Tensor) else {}


def build_criterion(cfg: LossConfig, model: nn.Module, loader: LoaderConfig) -> Criterion:
    """The criterion of ``cfg`` for ``model`` (the bare model, before any wrapper)."""
    loss = build_loss(cfg)
    if cfg.margin_lambda is None:
        return Criterion(loss)
    if loader.repeat_aug < 2:
        log.warning("loss.margin_lambda without loader.repeat_aug >= 2: a batch holds no positive pairs")
    return MultiGrainCriterion(loss, model, cfg)
