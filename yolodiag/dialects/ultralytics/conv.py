"""Our own convolution layers of Ultralytics 8.4.190 (its `nn/modules/conv.py` names), eval-free.

Each class computes what the Ultralytics layer of that name computes, with the same constructor
signature (rows written for Ultralytics build unchanged) and the same attribute names (`conv`,
`bn`, `cv1`, ...): they are the state-dict keys of its checkpoints. Conv, DWConv,
DWConvTranspose2d, Focus, `autopad` and the build-scoped default activation are YOLOv5's too:
they live in `dialects/common/conv.py` and are named here for this family's table and blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from yolodiag.dialects.common.conv import (  # noqa: F401  (the table and blocks name them here)
    Conv,
    DWConv,
    DWConvTranspose2d,
    Focus,
    activation,
    autopad,
    default_activation,
)


class ConvTranspose(nn.Module):
    """ConvTranspose2d -> BatchNorm2d (or none, then the transposed conv has a bias) -> act."""

    def __init__(self, c1, c2, k=2, s=2, p=0, bn=True, act=True):
        super().__init__()
        self.conv_transpose = nn.ConvTranspose2d(c1, c2, k, s, p, bias=not bn)
        self.bn = nn.BatchNorm2d(c2) if bn else nn.Identity()
        self.act = activation(act)

    def forward(self, x):
        return self.act(self.bn(self.conv_transpose(x)))


class GhostConv(nn.Module):
    """Half the output from a Conv, the other half from a cheap 5x5 depth-wise Conv of it."""

    def __init__(self, c1, c2, k=1, s=1, g=1, act=True):
        super().__init__()
        hidden = c2 // 2
        self.cv1 = Conv(c1, hidden, k, s, None, g, act=act)
        self.cv2 = Conv(hidden, hidden, 5, 1, None, hidden, act=act)

    def forward(self, x):
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


class RepConv(nn.Module):
    """Training-time re-parameterisable block: act(3x3 Conv + 1x1 Conv (+ BatchNorm identity)),
    both convolutions without activation."""

    def __init__(self, c1, c2, k=3, s=1, p=1, g=1, d=1, act=True, bn=False, deploy=False):
        super().__init__()
        self.g = g
        self.c1 = c1
        self.c2 = c2
        self.act = activation(act)
        self.bn = nn.BatchNorm2d(c1) if bn and c2 == c1 and s == 1 else None
        self.conv1 = Conv(c1, c2, k, s, p=p, g=g, act=False)
        self.conv2 = Conv(c1, c2, 1, s, p=(p - k // 2), g=g, act=False)

    def forward(self, x):
        identity = 0 if self.bn is None else self.bn(x)
        return self.act(self.conv1(x) + self.conv2(x) + identity)


class Concat(nn.Module):
    """Concatenate a list of maps along `dimension` (channels)."""

    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)
