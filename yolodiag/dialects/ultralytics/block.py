"""Our own blocks of Ultralytics 8.4.190 (its `nn/modules/block.py` names), eval-free: the
bottlenecks and the CSP families built on them.

Same constructor signatures and attribute names as Ultralytics' classes (its state-dict keys);
the computation is written here from what each block does.
"""

from __future__ import annotations

import torch
from torch import nn

from yolodiag.dialects.ultralytics.conv import Conv


class Bottleneck(nn.Module):
    """Two convolutions (kernels `k`, hidden width c2 * e), added to the input when the widths
    allow and `shortcut` asks."""

    def __init__(self, c1, c2, shortcut=True, g=1, k=(3, 3), e=0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, k[0], 1)
        self.cv2 = Conv(hidden, c2, k[1], 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP with two halves: one half passes through n bottlenecks, every intermediate map is
    kept, and all are concatenated into a 1x1 Conv."""

    def __init__(self, c1, c2, n=1, shortcut=False, g=1, e=0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, g, k=((3, 3), (3, 3)),
                                          e=1.0) for _ in range(n))

    def forward(self, x):
        parts = list(self.cv1(x).chunk(2, 1))
        for block in self.m:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, 1))
