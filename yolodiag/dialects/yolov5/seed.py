"""The seed document's ResNet-18 `BasicBlock`, with its exact semantics, bug included.

The seed pasted this block into YOLOv5's common.py and registered it as channel-aware. It
accepts a `stride` argument but both 3x3 convolutions and the 1x1 projection use stride 1, so
`BasicBlock(c1, c2, 2)` never downsamples: that is what yolodiag must diagnose (YD205), so it
is reproduced here, not fixed. Attribute names `layer` and `shortcut` are the seed's, kept
because they are the state-dict keys of checkpoints trained with it.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut (1x1 projection when the width changes), ReLU.

    `stride` only decides whether the projection exists; no convolution uses it.
    """

    def __init__(self, in_channels, out_channels, stride=1, padding=1):
        super().__init__()
        self.layer = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=padding,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=padding,
                      bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        out = self.layer(x)
        out += self.shortcut(x)
        return F.relu(out)
