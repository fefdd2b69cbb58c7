"""SRN, the Spatial Regularization Network (Zhu et al., CVPR 2017; docs/methods.md, "SRN").

:class:`SRNHead` replaces the model's last linear layer and keeps it as the main net's classifier.
A forward hook captures the res4 feature map (``layer3`` of a ResNet: 14 x 14 at 224 px; other
sizes are average-pooled to the grid). From it:

- attention branch ``f_att``: 1x1 conv 512 -> 3x3 conv 512 -> 1x1 conv C, softmax over the spatial
  positions of each label (A);
- confidence branch: 1x1 conv C (S); the attention-weighted predictions are
  ``y_att = sum_{h,w} A o S``;
- ``f_sr`` on ``U = A o sigmoid(S)``: 1x1 conv 512 -> 1x1 conv 512 -> a grouped conv over the whole
  grid (512 groups, 2048 outputs) -> fc C (y_sr);
- final score ``y = alpha y_cls + (1 - alpha) y_sr`` with alpha = 0.5.

Training in stages (``model.srn.stage``), each continuing the previous stage's weights
(``model.init_weights``): 1 the main net (y_cls); 2 attention and confidence only, on y_att;
3 f_sr only, on y_sr; 4 everything, on the final score. :func:`apply_stage` freezes the rest,
BatchNorm statistics of frozen layers included.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import replace_module


class SRNHead(nn.Module):
    def __init__(self, classifier: nn.Module, in_channels: int, num_labels: int, grid: int = 14,
                 stage: int = 4, alpha: float = 0.5):
        super().__init__()
        self.fc = classifier
        self.grid, self.stage, self.alpha = grid, stage, alpha
        self.attention = nn.Sequential(
            nn.Conv2d(in_channels, 512, 1), nn.ReLU(inplace=True),
            nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(512, num_labels, 1))
        self.confidence = nn.Conv2d(in_channels, num_labels, 1)
        self.fsr = nn.Sequential(
            nn.Conv2d(num_labels, 512, 1), nn.ReLU(inplace=True),
            nn.Conv2d(512, 512, 1), nn.ReLU(inplace=True),
            nn.Conv2d(512, 2048, grid, groups=512), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(2048, num_labels))
        self.feature_map: torch.Tensor | None = None
        self.outputs: dict[str, torch.Tensor] = {}

    def capture(self, module, args, output) -> None:
        self.feature_map = output

    def branches(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[-1] != self.grid or x.shape[-2] != self.grid:
            x = F.adaptive_avg_pool2d(x, self.grid)
        b, _, h, w = x.shape
        a = self.attention(x)
        a = a.flatten(2).softmax(dim=-1).view(b, -1, h, w)           # spatial softmax per label
        s = self.confidence(x)
        u = a * torch.sigmoid(s)
        return {"attention": a, "confidence": s, "att": (a * s).sum(dim=(2, 3)), "sr": self.fsr(u)}

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        main = self.fc(pooled)
        if self.stage == 1 or self.feature_map is None:
            self.outputs = {"cls": main}
            return main
        out = self.branches(self.feature_map)
        self.feature_map = None
        out["cls"] = main
        out["final"] = self.alpha * main + (1 - self.alpha) * out["sr"]
        self.outputs = out
        if self.training:
            return {2: out["att"], 3: out["sr"]}.get(self.stage, out["final"])
        return main if self.stage == 2 else out["final"]


def attach_srn(model: nn.Module, head_path: str, feature_layer: str, num_labels: int, grid: int,
               stage: int) -> SRNHead:
    """Put an SRN head in place of the model's classifier and hook the feature layer."""
    channels = {f["module"]: f["num_chs"] for f in getattr(model, "feature_info", [])}
    if feature_layer not in channels:
        raise ValueError(f"model.srn.feature_layer={feature_layer!r}: the model's feature layers are {sorted(channels)}")
    head = SRNHead(model.get_submodule(head_path), channels[feature_layer], num_labels, grid, stage)
    replace_module(model, head_path, head)
    model.get_submodule(feature_layer).register_forward_hook(head.capture)
    apply_stage(model, head, stage)
    return head


def apply_stage(model: nn.Module, head: SRNHead, stage: int) -> None:
    """Which parameters train: 1 all but the SRN branches; 2 attention + confidence; 3 f_sr; 4 all."""
    if stage not in (1, 2, 3, 4):
        raise ValueError(f"model.srn.stage={stage}: 1, 2, 3 or 4")
    head.stage = stage
    srn = {id(p) for m in (head.attention, head.confidence, head.fsr) for p in m.parameters()}
    train = {1: lambda p: id(p) not in srn,
             2: lambda p: any(p is q for q in list(head.attention.parameters()) + list(head.confidence.parameters())),
             3: lambda p: any(p is q for q in head.fsr.parameters()),
             4: lambda p: True}[stage]
    for p in model.parameters():
        p.requires_grad_(train(p))
    # frozen BatchNorm layers stay frozen: normalise with, and never update, their running stats
    for handle in getattr(model, "_srn_bn_hooks", []):
        handle.remove()
    hooks = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            hooks.append(m.register_forward_pre_hook(_keep_eval))
    model._srn_bn_hooks = hooks


def _keep_eval(module: nn.Module, args) -> None:
    module.training = False
