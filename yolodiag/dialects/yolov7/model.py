"""What YOLOv7's `Model.__init__` (commit a207844) does around the layers the shared builder
makes.

For its own heads only (a class of another name gets no strides at all): strides measured by a
train-mode forward of zeros at 256x256 (IAuxDetect: from the first four maps, as YOLOv7 slices
them), `check_anchor_order` (YOLOv7 compares the areas of the very first and very last anchor
in pixels and reverses `anchors` and `anchor_grid` when their sign differs from the strides',
also when the areas are equal), the anchors divided by the strides (`anchor_grid` stays in
pixels), the bias priors; then BatchNorm eps/momentum and in-place ReLU-family activations
(not SiLU). YOLOv7 has no `activation:` key: a YAML's is ignored.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch
from torch import nn

from yolodiag.build.meta import shape_only
from yolodiag.dialects.common.training import anchor_head_priors as priors  # noqa: F401
from yolodiag.dialects.yolov7 import HEAD_RULES
from yolodiag.dialects.yolov7.heads import Detect

if TYPE_CHECKING:
    from yolodiag.build.builder import BuiltModel, DetectionNet, LayerRecord
    from yolodiag.spec import ModelSpec

PROBE_SIZE = 256
# What YD402 says of check_anchor_order: YOLOv7's rule differs from YOLOv5's in both respects.
ANCHOR_ORDER_RULE = ("it compares only the areas of the very first and very last anchor, and "
                     "reverses every row also when the two are equal")
AUX_PROBE_MAPS = 4  # YOLOv7 measures IAuxDetect's strides on forward(...)[:4]


def activation_scope(factory) -> contextlib.AbstractContextManager:
    """YOLOv7 reads no `activation:` key: nothing to scope."""
    return contextlib.nullcontext()


def measure_head(net: DetectionNet, spec: ModelSpec, records: list[LayerRecord],
                 device: torch.device
                 ) -> tuple[tuple[float, ...] | None, torch.Tensor | None, bool]:
    """Strides, anchor order and grid units, priors, as YOLOv7's Model.__init__.
    Returns (strides, anchors in grid units, whether the rows were reversed)."""
    if not records or records[-1].rule not in HEAD_RULES or not isinstance(net.model[-1], Detect):
        return None, None, False
    head = net.model[-1]
    net.train(device.type != "meta")  # as YOLOv7 (train mode); on meta no statistics exist
    with torch.no_grad(), shape_only(device):
        out = net.run_layers(torch.zeros(1, spec.ch, PROBE_SIZE, PROBE_SIZE, device=device))
    maps = out[:AUX_PROBE_MAPS] if head.lead_levels_only else out
    strides = torch.tensor([PROBE_SIZE / m.shape[-2] for m in maps])
    # From the completed rows, not the head's buffers: on the meta device those hold no values.
    anchors = torch.tensor(records[-1].args[1]).float().view(head.nl, -1, 2)
    anchor_grid = anchors.clone().view(head.nl, 1, -1, 1, 1, 2)
    area = anchor_grid.prod(-1).view(-1)
    flipped = bool((area[-1] - area[0]).sign() != (strides[-1] - strides[0]).sign())
    if flipped:
        anchors, anchor_grid = anchors.flip(0), anchor_grid.flip(0)
    anchors = anchors / strides.view(-1, 1, 1)
    with torch.no_grad():
        head.stride.copy_(strides)
        head.anchors.copy_(anchors)
        head.anchor_grid.copy_(anchor_grid)
    head.initialize_biases(strides)
    return tuple(strides.tolist()), anchors, flipped


def objectness_prior(stride: float) -> float:
    """The objectness a fresh head level predicts in each cell: sigmoid(log(8 / (640/s)^2))."""
    return 1 / (1 + (640 / stride) ** 2 / 8)


def initialize_weights(net: nn.Module) -> None:
    """YOLOv7's BatchNorm eps/momentum and in-place activations (exact types, SiLU not one)."""
    for m in net.modules():
        if type(m) is nn.BatchNorm2d:
            m.eps = 1e-3
            m.momentum = 0.03
        elif type(m) in (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6):
            m.inplace = True


def untrainable(built: BuiltModel) -> str | None:
    """Why gradflow and overfit cannot train this model (None: they can). IAuxDetect's lead and
    auxiliary maps need train_aux.py's ComputeLossAuxOTA, which we do not implement; YOLOv7's
    train.py fails on them too (its losses read one map per anchor level: IndexError)."""
    head = built.model.head
    if not isinstance(head, Detect):
        return "a Detect or IDetect head"
    if head.lead_levels_only:
        return ("a Detect or IDetect head (an IAuxDetect model trains with YOLOv7's "
                "train_aux.py and its ComputeLossAuxOTA, which yolodiag does not implement; "
                "YOLOv7's train.py fails on its auxiliary maps)")
    return None
