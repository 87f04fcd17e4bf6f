"""YOLOv7's bottleneck and CSP families (YOLOR's): Bottleneck, Res and ResX, and their
BottleneckCSPA/B/C, ResCSPA/B/C and ResXCSPA/B/C stacks. As in blocks.py: our own code, YOLOv7's
constructor arguments, attribute names and order of creation (see that module's docstring).
"""

from __future__ import annotations

import torch
from torch import nn

from yolodiag.dialects.yolov7.blocks import Conv


class Bottleneck(nn.Module):
    """Darknet bottleneck: 1x1 Conv to int(c2 * e), 3x3 Conv (groups g) to c2, plus the input when
    `shortcut` and c1 == c2: (b, c1, h, w) -> (b, c2, h, w)."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class Res(nn.Module):
    """ResNet bottleneck: 1x1 Conv to int(c2 * e), 3x3 Conv (groups g) at that width, 1x1 Conv to
    c2, plus the input when `shortcut` and c1 == c2: (b, c1, h, w) -> (b, c2, h, w)."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, hidden, 3, 1, g=g)
        self.cv3 = Conv(hidden, c2, 1, 1)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv3(self.cv2(self.cv1(x)))
        return x + y if self.add else y


class ResX(Res):
    """ResNeXt bottleneck: `Res` with a grouped 3x3 (32 groups by default)."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 32, e: float = 0.5):
        super().__init__(c1, c2, shortcut, g, e)


def _bottlenecks(width: int, n: int, shortcut: bool, g: int) -> nn.Sequential:
    return nn.Sequential(*(Bottleneck(width, width, shortcut, g, e=1.0) for _ in range(n)))


def _res_stack(width: int, n: int, shortcut: bool, g: int, e: float) -> nn.Sequential:
    return nn.Sequential(*(Res(width, width, shortcut, g, e=e) for _ in range(n)))


class BottleneckCSPA(nn.Module):
    """CSP block, variant A, width w = int(c2 * e): a 1x1 Conv then n Bottlenecks (e = 1) on one
    path, a 1x1 Conv of the input on the other, concatenated and merged by a 1x1 Conv to c2:
    (b, c1, h, w) -> (b, c2, h, w)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1, 1)
        self.m = _bottlenecks(hidden, n, shortcut, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class BottleneckCSPB(nn.Module):
    """CSP block, variant B, width c2 (`e` is ignored): a 1x1 Conv to c2, then n Bottlenecks
    (e = 1) beside a 1x1 Conv of that Conv's output, concatenated and merged by a 1x1 Conv:
    (b, c1, h, w) -> (b, c2, h, w). Unlike A and C, `shortcut` defaults to False."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1,
                 e: float = 0.5):
        super().__init__()
        hidden = int(c2)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1, 1)
        self.m = _bottlenecks(hidden, n, shortcut, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = self.cv1(x)
        return self.cv3(torch.cat((self.m(split), self.cv2(split)), 1))


class BottleneckCSPC(nn.Module):
    """CSP block, variant C, width w = int(c2 * e): a 1x1 Conv, n Bottlenecks (e = 1) and another
    1x1 Conv on one path, a 1x1 Conv of the input on the other, concatenated and merged by a 1x1
    Conv to c2: (b, c1, h, w) -> (b, c2, h, w)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(hidden, hidden, 1, 1)
        self.cv4 = Conv(2 * hidden, c2, 1, 1)
        self.m = _bottlenecks(hidden, n, shortcut, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv4(torch.cat((self.cv3(self.m(self.cv1(x))), self.cv2(x)), 1))


# The Res and ResX CSP variants are their Bottleneck parent with `m` rebuilt. The parent's
# stack is still created first and then thrown away (YOLOv7 does the same), which keeps the
# random draws of a seeded build in YOLOv7's order and the key `m` in its place in the state
# dict. The stack's width is whatever the parent's cv1 produces (int(c2 * e) for A and C, c2
# for B).


class ResCSPA(BottleneckCSPA):
    """BottleneckCSPA whose stack is n `Res` blocks (e = 0.5, groups g, default 1)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = _res_stack(self.cv1.conv.out_channels, n, shortcut, g, e=0.5)


class ResCSPB(BottleneckCSPB):
    """BottleneckCSPB whose stack is n `Res` blocks (e = 0.5, groups g); `shortcut` defaults to
    True here, unlike its parent."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = _res_stack(self.cv1.conv.out_channels, n, shortcut, g, e=0.5)


class ResCSPC(BottleneckCSPC):
    """BottleneckCSPC whose stack is n `Res` blocks (e = 0.5, groups g, default 1)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = _res_stack(self.cv1.conv.out_channels, n, shortcut, g, e=0.5)


# ResX variants: 32 groups by default and a full-width Res stack (e = 1). The discarded stacks
# of the parents are built with the same g, so every width they see must divide by it too.


class ResXCSPA(ResCSPA):
    """ResCSPA with 32 groups by default and a stack of n `Res` blocks at e = 1."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 32,
                 e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = _res_stack(self.cv1.conv.out_channels, n, shortcut, g, e=1.0)


class ResXCSPB(ResCSPB):
    """ResCSPB with 32 groups by default and a stack of n `Res` blocks at e = 1."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 32,
                 e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = _res_stack(self.cv1.conv.out_channels, n, shortcut, g, e=1.0)


class ResXCSPC(ResCSPC):
    """ResCSPC with 32 groups by default and a stack of n `Res` blocks at e = 1."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 32,
                 e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = _res_stack(self.cv1.conv.out_channels, n, shortcut, g, e=1.0)
