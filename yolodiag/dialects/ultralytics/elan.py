"""Our own YOLOv9-family blocks of Ultralytics 8.4.190 (its `nn/modules/block.py` names),
eval-free: the re-parameterisable CSP stack, the ELAN aggregations, the two down-samplers and
the CBLinear/CBFuse pair with which yolov9e feeds its auxiliary backbone.

Same constructor signatures and attribute names as Ultralytics' classes (its state-dict keys);
the computation is written here from what each block does. 8.4.190 has no RepConvN of its own:
RepBottleneck's first convolution is the plain `RepConv` of conv.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolodiag.dialects.ultralytics.block import C3, Bottleneck
from yolodiag.dialects.ultralytics.conv import Conv, RepConv, autopad


def _average_2x2(x: torch.Tensor) -> torch.Tensor:
    # Stride 1, no padding: a 2x2 blur that trims one row and column before a stride-2 step.
    return F.avg_pool2d(x, kernel_size=2, stride=1, padding=0, ceil_mode=False,
                        count_include_pad=True)


class RepBottleneck(Bottleneck):
    """A Bottleneck whose first convolution is a RepConv (3x3 + 1x1 branches, kernel k[0])."""

    def __init__(self, c1, c2, shortcut=True, g=1, k=(3, 3), e=0.5):
        super().__init__(c1, c2, shortcut, g, k, e)
        self.cv1 = RepConv(c1, int(c2 * e), k[0], 1)


class RepCSP(C3):
    """C3 whose bottlenecks are RepBottlenecks (n of them, on one 1x1 projection)."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        hidden = int(c2 * e)
        self.m = nn.Sequential(*(RepBottleneck(hidden, hidden, shortcut, g, e=1.0)
                                 for _ in range(n)))


class RepNCSPELAN4(nn.Module):
    """ELAN aggregation: a 1x1 Conv to c3 channels split in halves; the second half runs
    through branch cv2 (to c4 channels), its result through branch cv3; the two halves and
    both branch outputs (c3 + 2 * c4 channels) are fused by a 1x1 Conv to c2. Each branch is
    a RepCSP of n RepBottlenecks followed by a 3x3 Conv."""

    def __init__(self, c1, c2, c3, c4, n=1):
        super().__init__()
        self.c = c3 // 2
        self.cv1 = Conv(c1, c3, 1, 1)
        self.cv2 = self.branch(self.c, c4, n)
        self.cv3 = self.branch(c4, c4, n)
        self.cv4 = Conv(c3 + 2 * c4, c2, 1, 1)

    @staticmethod
    def branch(c_in: int, c_out: int, n: int) -> nn.Module:
        return nn.Sequential(RepCSP(c_in, c_out, n), Conv(c_out, c_out, 3, 1))

    def forward(self, x):
        parts = list(self.cv1(x).chunk(2, 1))
        parts.append(self.cv2(parts[-1]))
        parts.append(self.cv3(parts[-1]))
        return self.cv4(torch.cat(parts, 1))


class ELAN1(RepNCSPELAN4):
    """RepNCSPELAN4 with a single 3x3 Conv as each branch (the small yolov9t/s rows)."""

    def __init__(self, c1, c2, c3, c4):
        super().__init__(c1, c2, c3, c4)

    @staticmethod
    def branch(c_in: int, c_out: int, n: int) -> nn.Module:
        return Conv(c_in, c_out, 3, 1)


class AConv(nn.Module):
    """Down-sampling by two: the 2x2 blur, then a 3x3 stride-2 Conv."""

    def __init__(self, c1, c2):
        super().__init__()
        self.cv1 = Conv(c1, c2, 3, 2, 1)

    def forward(self, x):
        return self.cv1(_average_2x2(x))


class ADown(nn.Module):
    """Down-sampling by two after the 2x2 blur, on channel halves: a 3x3 stride-2 Conv of the
    first, a 3x3 stride-2 max-pool then 1x1 Conv of the second, each giving c2 // 2."""

    def __init__(self, c1, c2):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1 // 2, self.c, 3, 2, 1)
        self.cv2 = Conv(c1 // 2, self.c, 1, 1, 0)

    def forward(self, x):
        convolved, pooled = _average_2x2(x).chunk(2, 1)
        pooled = F.max_pool2d(pooled, kernel_size=3, stride=2, padding=1)
        return torch.cat((self.cv1(convolved), self.cv2(pooled)), 1)


class SPPELAN(nn.Module):
    """Spatial pyramid pooling, ELAN style: a 1x1 Conv to c3, three chained k x k stride-1
    max-pools, all four maps concatenated into a 1x1 Conv to c2."""

    def __init__(self, c1, c2, c3, k=5):
        super().__init__()
        self.c = c3
        self.cv1 = Conv(c1, c3, 1, 1)
        self.cv2 = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.cv3 = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.cv4 = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.cv5 = Conv(4 * c3, c2, 1, 1)

    def forward(self, x):
        maps = [self.cv1(x)]
        for pool in (self.cv2, self.cv3, self.cv4):
            maps.append(pool(maps[-1]))
        return self.cv5(torch.cat(maps, 1))


class CBLinear(nn.Module):
    """One biased convolution to sum(c2s) channels, returned as a tuple of maps of c2s[j]
    channels each (one per later CBFuse that reads it)."""

    def __init__(self, c1, c2s, k=1, s=1, p=None, g=1):
        super().__init__()
        self.c2s = c2s
        self.conv = nn.Conv2d(c1, sum(c2s), k, s, autopad(k, p), groups=g, bias=True)

    def forward(self, x) -> tuple[torch.Tensor, ...]:
        return self.conv(x).split(self.c2s, dim=1)


class CBFuse(nn.Module):
    """Sum of a target map (the last input) and, from each earlier input (a CBLinear tuple),
    its part idx[j], resized to the target's height and width by nearest interpolation."""

    def __init__(self, idx):
        super().__init__()
        self.idx = idx

    def forward(self, xs: list) -> torch.Tensor:
        *sources, target = xs
        size = target.shape[2:]
        resized = [F.interpolate(parts[self.idx[j]], size=size, mode="nearest")
                   for j, parts in enumerate(sources)]
        # One stacked sum, not a chain of additions: the same float order as Ultralytics.
        return torch.stack([*resized, target]).sum(0)
