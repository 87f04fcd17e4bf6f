"""Our own implementation of the YOLOv7 building blocks (WongKinYiu/yolov7 a207844), eval-free.

Each class computes what YOLOv7's class of the same name computes and takes the same constructor
arguments in the same order, so a row as YOLOv7's parse_model completes it (`[c1, c2, *rest]`,
with the repeat count inserted third for the CSP blocks) builds unchanged. Submodule attribute
names are YOLOv7's because they are the state-dict keys of its checkpoints, and submodules are
created in YOLOv7's order (including the stacks the Res/ResX CSP variants build and then
replace), so that a seeded build could draw the same initial weights. Unlike YOLOv5 v7.0 there
is no model-wide default activation: `act=True` always means SiLU, and a YAML that wants another
activation passes a module instance in the row's arguments. Test-time fusion (RepConv's
re-parameterisation, Conv+BN folding) is not implemented: only the training and deploy forms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

Kernel = int | Sequence[int]


def autopad(k: Kernel, p: Kernel | None = None) -> Kernel:
    """'Same' padding at stride 1: half the kernel per dimension, unless `p` is given."""
    if p is not None:
        return p
    return k // 2 if isinstance(k, int) else [side // 2 for side in k]


def _activation(act: bool | nn.Module) -> nn.Module:
    # YOLOv7 has no switchable default: True is SiLU, a module is used as given (and shared by
    # every repeat of a row), anything else means no activation.
    if act is True:
        return nn.SiLU()
    return act if isinstance(act, nn.Module) else nn.Identity()


class Conv(nn.Module):
    """Conv2d without bias, BatchNorm2d, activation: (b, c1, h, w) -> (b, c2, h/s, w/s)."""

    def __init__(self, c1: int, c2: int, k: Kernel = 1, s: Kernel = 1, p: Kernel | None = None,
                 g: int = 1, act: bool | nn.Module = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = _activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class RepConv(nn.Module):
    """RepVGG-style 3x3 block: (b, c1, h, w) -> (b, c2, h/s, w/s).

    Training form: act(BN(3x3 conv) + BN(1x1 conv) + BN(x)), the last term only where the input
    can be added unchanged (c1 == c2 and stride 1). Deploy form: act(one biased 3x3 conv), the
    single kernel the three branches fold into. Only k = 3 with padding 1 is supported, since the
    1x1 branch is aligned with the 3x3 one by that padding.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, p: int | None = None,
                 g: int = 1, act: bool | nn.Module = True, deploy: bool = False):
        super().__init__()
        self.deploy = deploy
        self.groups = g
        self.in_channels = c1
        self.out_channels = c2
        if k != 3 or autopad(k, p) != 1:
            raise ValueError(f"RepConv needs a 3x3 kernel with padding 1, got k={k}, p={p}")
        self.act = _activation(act)
        if deploy:
            self.rbr_reparam = nn.Conv2d(c1, c2, 3, s, 1, groups=g, bias=True)
            return
        # None (no state) when the identity cannot be added: other width or a stride.
        self.rbr_identity = nn.BatchNorm2d(c1) if c1 == c2 and s == 1 else None
        self.rbr_dense = nn.Sequential(nn.Conv2d(c1, c2, 3, s, 1, groups=g, bias=False),
                                       nn.BatchNorm2d(c2))
        self.rbr_1x1 = nn.Sequential(nn.Conv2d(c1, c2, 1, s, 0, groups=g, bias=False),
                                     nn.BatchNorm2d(c2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reparam = getattr(self, "rbr_reparam", None)
        if reparam is not None:
            return self.act(reparam(x))
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return self.act(y)


class MP(nn.Module):
    """Max-pool with stride equal to the kernel: (b, c, h, w) -> (b, c, h/k, w/k)."""

    def __init__(self, k: int = 2):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


class SP(nn.Module):
    """Padded max-pool, size kept at stride 1: (b, c, h, w) -> (b, c, h/s, w/s)."""

    def __init__(self, k: int = 3, s: int = 1):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=s, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


class ReOrg(nn.Module):
    """Space-to-depth by slicing: the four 2x2 pixel phases stacked as channels, (b, c, h, w) ->
    (b, 4c, h/2, w/2), phases in the order (even row, even col), (odd, even), (even, odd),
    (odd, odd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phases = (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2])
        return torch.cat(phases, 1)


class Concat(nn.Module):
    """Concatenation of a list of tensors along `dimension` (channels by default)."""

    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


class Shortcut(nn.Module):
    """Sum of the first two tensors of a list (same shape in, same shape out).

    `dimension` is stored but unused: YAML rows pass it, and YOLOv7 ignores it too.
    """

    def __init__(self, dimension: int = 0):
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return x[0] + x[1]


class Stem(nn.Module):
    """Stride-4 stem: a stride-2 3x3 Conv to c2/2, then a 1x1 + stride-2 3x3 Conv path beside a
    2x2 max-pool, concatenated and merged by a 1x1 Conv: (b, c1, h, w) -> (b, c2, h/4, w/4).

    k, s, p, g and act are accepted for the row's sake and ignored, as in YOLOv7.
    """

    def __init__(self, c1: int, c2: int, k: Kernel = 1, s: int = 1, p: Kernel | None = None,
                 g: int = 1, act: bool | nn.Module = True):
        super().__init__()
        half = int(c2 / 2)
        self.cv1 = Conv(c1, half, 3, 2)
        self.cv2 = Conv(half, half, 1, 1)
        self.cv3 = Conv(half, half, 3, 2)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.cv4 = Conv(2 * half, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv4(torch.cat((self.cv3(self.cv2(x)), self.pool(x)), 1))


class DownC(nn.Module):
    """Two-path downsampling by k: a 1x1 Conv (width c1) then a stride-k 3x3 Conv to c2/2, beside
    a k x k max-pool then a 1x1 Conv to c2/2; concatenated: (b, c1, h, w) -> (b, c2, h/k, w/k).

    `n` is only there because parse_model inserts a repeat count for this class; it is unused.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, k: int = 2):
        super().__init__()
        hidden = int(c1)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, c2 // 2, 3, k)
        self.cv3 = Conv(c1, c2 // 2, 1, 1)
        self.mp = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.cv2(self.cv1(x)), self.cv3(self.mp(x))), 1)


def _pools(kernels: Sequence[int]) -> nn.ModuleList:
    # Stride 1 and half-kernel padding keep the size, so the pooled maps can be concatenated.
    return nn.ModuleList(nn.MaxPool2d(kernel_size=size, stride=1, padding=size // 2)
                         for size in kernels)


class SPP(nn.Module):
    """Spatial pyramid pooling: a 1x1 Conv to c1/2, its max-pools at each kernel size (stride 1)
    concatenated with it, a 1x1 Conv to c2: (b, c1, h, w) -> (b, c2, h, w)."""

    def __init__(self, c1: int, c2: int, k: Sequence[int] = (5, 9, 13)):
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * (len(k) + 1), c2, 1, 1)
        self.m = _pools(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x, *(pool(x) for pool in self.m)], 1))


class SPPCSPC(nn.Module):
    """SPP inside a CSP split, width w = int(2 * c2 * e): one path 1x1, 3x3, 1x1 Convs, the
    pyramid of max-pools, 1x1 and 3x3 Convs; the other a 1x1 Conv; concatenated and merged by a
    1x1 Conv: (b, c1, h, w) -> (b, c2, h, w).

    The merge after the pools takes 4w channels whatever `k` holds (as YOLOv7's does), so only
    three kernel sizes work. `n`, `shortcut` and `g` are accepted and unused.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1,
                 e: float = 0.5, k: Sequence[int] = (5, 9, 13)):
        super().__init__()
        hidden = int(2 * c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(hidden, hidden, 3, 1)
        self.cv4 = Conv(hidden, hidden, 1, 1)
        self.m = _pools(k)
        self.cv5 = Conv(4 * hidden, hidden, 1, 1)
        self.cv6 = Conv(hidden, hidden, 3, 1)
        self.cv7 = Conv(2 * hidden, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv4(self.cv3(self.cv1(x)))
        pooled = self.cv6(self.cv5(torch.cat([y, *(pool(y) for pool in self.m)], 1)))
        return self.cv7(torch.cat((pooled, self.cv2(x)), 1))


class ImplicitA(nn.Module):
    """YOLOR's additive implicit knowledge: a learned (1, c, 1, 1) offset added to the input,
    initialised from N(mean, std). Shape unchanged."""

    def __init__(self, channel: int, mean: float = 0.0, std: float = 0.02):
        super().__init__()
        self.channel = channel
        self.mean = mean
        self.std = std
        # Uninitialised storage is fine: normal_ draws every entry.
        self.implicit = nn.Parameter(torch.empty(1, channel, 1, 1))
        nn.init.normal_(self.implicit, mean=mean, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit + x


class ImplicitM(nn.Module):
    """YOLOR's multiplicative implicit knowledge: a learned (1, c, 1, 1) per-channel scale,
    initialised from N(mean, std) around 1. Shape unchanged."""

    def __init__(self, channel: int, mean: float = 1.0, std: float = 0.02):
        super().__init__()
        self.channel = channel
        self.mean = mean
        self.std = std
        self.implicit = nn.Parameter(torch.empty(1, channel, 1, 1))
        nn.init.normal_(self.implicit, mean=mean, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit * x
