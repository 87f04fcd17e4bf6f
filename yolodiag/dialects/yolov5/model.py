"""What YOLOv5 v7.0's `DetectionModel.__init__` does around the layers the shared builder makes.

The Detect strides measured by a train-mode forward of zeros at 256x256, the anchors flipped
when their order disagrees with the strides and divided by them, the objectness/class bias
priors, BatchNorm eps/momentum and in-place activations, and the YAML's `activation:` scoped
to one build. The shared builder (`yolodiag.build.builder`) calls these through the dialect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from yolodiag.build.meta import shape_only
from yolodiag.dialects.common.training import anchor_head_priors as priors  # noqa: F401
from yolodiag.dialects.yolov5 import HEAD_RULES
from yolodiag.dialects.yolov5.blocks import default_activation as activation_scope  # noqa: F401
from yolodiag.dialects.yolov5.heads import Detect, Segment, objectness_prior  # noqa: F401

if TYPE_CHECKING:
    from yolodiag.build.builder import BuiltModel, DetectionNet, LayerRecord
    from yolodiag.spec import ModelSpec

# What YD402 says of the flip rule: the mean anchor areas of the first and last rows only.
ANCHOR_ORDER_RULE = "it compares only the first and last"
PROBE_SIZE = 256  # YOLOv5 measures Detect strides with one 256x256 forward


def measure_head(net: DetectionNet, spec: ModelSpec, records: list[LayerRecord],
                 device: torch.device
                 ) -> tuple[tuple[float, ...] | None, torch.Tensor | None, bool]:
    """Strides by YOLOv5's probe (train mode, zeros, 256x256), anchor order, grid units, priors.

    A user's head (a --modules class with rule detect) is measured the same way from its
    train-mode output, one map per level; its `stride` and `anchors` are set where it has
    them, and its bias priors are its own business.
    Returns (strides, anchors in grid units, whether the YAML's rows were flipped)."""
    if not records or records[-1].rule not in HEAD_RULES:
        return None, None, False
    head = net.model[-1]
    size = PROBE_SIZE
    ours = isinstance(head, Detect)
    # Train mode, as YOLOv5: on real tensors the probe leaves the same BatchNorm running
    # statistics behind. On meta there are none, and eval mode skips a slow torch code path;
    # a user's head runs in train mode regardless (its eval mode decodes with the strides).
    net.train(device.type != "meta" or not ours)
    with torch.no_grad(), shape_only(device):
        out = net.run_layers(torch.zeros(1, spec.ch, size, size, device=device))
    maps = head.raw_maps(out) if ours else out
    strides = torch.tensor([size / r.shape[-2] for r in maps])
    rows = records[-1].args[1]
    anchors = torch.tensor(rows).float().view(len(strides), -1, 2)
    # YOLOv5 flips the anchor rows when their sizes run against the strides.
    area = anchors.prod(-1).mean(-1).view(-1)
    da, ds = area[-1] - area[0], strides[-1] - strides[0]
    flipped = bool(da) and bool(da.sign() != ds.sign())
    if flipped:
        anchors = anchors.flip(0)
    anchors = anchors / strides.view(-1, 1, 1)
    if ours:
        with torch.no_grad():
            head.stride.copy_(strides)
            head.anchors.copy_(anchors)
        head.initialize_biases(strides)
    else:
        _set_user_head(head, strides, anchors)
    return tuple(strides.tolist()), anchors, flipped


def _set_user_head(head: nn.Module, strides: torch.Tensor, anchors: torch.Tensor) -> None:
    """What YOLOv5's model init sets on a head: `stride`, and `anchors` in grid units."""
    with torch.no_grad():
        for name, value in (("stride", strides), ("anchors", anchors)):
            current = getattr(head, name, None)
            if isinstance(current, torch.Tensor) and current.shape == value.shape:
                current.copy_(value.to(current.device, current.dtype))
            elif name == "stride":
                head.stride = value.to(next(head.parameters(), value).device)


def initialize_weights(net: nn.Module) -> None:
    """YOLOv5's BatchNorm eps/momentum and in-place activations (exact types, as there)."""
    for m in net.modules():
        if type(m) is nn.BatchNorm2d:
            m.eps = 1e-3
            m.momentum = 0.03
        elif type(m) in (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU):
            m.inplace = True


def untrainable(built: BuiltModel) -> str | None:
    """Why gradflow and overfit cannot train this model (None: they can)."""
    head = built.model.head
    if head is None or isinstance(head, Segment):
        return "a Detect head (the mask loss of Segment is not implemented)"
    return None
