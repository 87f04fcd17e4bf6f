"""Our own implementation of the YOLOv5 v7.0 building blocks, eval-free.

Each block computes what YOLOv5's block of the same name computes, with the same constructor
signature (so rows written for YOLOv5 build unchanged) and the same submodule attribute names
(`cv1`, `bn`, `m`, ...): those names are the state-dict keys of YOLOv5 checkpoints, so they are
kept for checkpoint compatibility even where a clearer name exists. Conv, DWConv,
DWConvTranspose2d, Focus and the build-scoped default activation are the ones Ultralytics has
too: they live in `dialects/common/conv.py`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from yolodiag.dialects.common.conv import (  # noqa: F401  (the table and heads name them here)
    Conv,
    DWConv,
    DWConvTranspose2d,
    Focus,
    autopad,
    default_activation,
)


class Contract(nn.Module):
    """(b, c, h, w) -> (b, c * gain**2, h / gain, w / gain)."""

    def __init__(self, gain=2):
        super().__init__()
        self.gain = gain

    def forward(self, x):
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4).contiguous()
        return x.view(b, c * s * s, h // s, w // s)


class Expand(nn.Module):
    """(b, c, h, w) -> (b, c / gain**2, h * gain, w * gain)."""

    def __init__(self, gain=2):
        super().__init__()
        self.gain = gain

    def forward(self, x):
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, s, s, c // s**2, h, w).permute(0, 3, 4, 1, 5, 2).contiguous()
        return x.view(b, c // s**2, h * s, w * s)


class Concat(nn.Module):
    """Concatenate a list of tensors along `dimension` (channels by default)."""

    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)


class Bottleneck(nn.Module):
    """1x1 then 3x3 Conv; adds the input when `shortcut` and the widths agree."""

    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class CrossConv(nn.Module):
    """A (1 x k) then (k x 1) Conv pair, optional residual add."""

    def __init__(self, c1, c2, k=3, s=1, g=1, e=1.0, shortcut=False):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, (1, k), (1, s))
        self.cv2 = Conv(hidden, c2, (k, 1), (s, 1), g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class BottleneckCSP(nn.Module):
    """CSP bottleneck (Cross Stage Partial Networks): a Bottleneck stack on half the channels."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = nn.Conv2d(c1, hidden, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(hidden, hidden, 1, 1, bias=False)
        self.cv4 = Conv(2 * hidden, c2, 1, 1)
        self.bn = nn.BatchNorm2d(2 * hidden)
        self.act = nn.SiLU()
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x):
        stacked = self.cv3(self.m(self.cv1(x)))
        bypass = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((stacked, bypass), 1))))


class C3(nn.Module):
    """CSP bottleneck with three Convs: `m` on one half, a 1x1 bypass on the other, then merge."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3x(C3):
    """C3 whose stack is CrossConv pairs."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        hidden = int(c2 * e)
        self.m = nn.Sequential(*(CrossConv(hidden, hidden, 3, 1, g, 1.0, shortcut)
                                 for _ in range(n)))


class TransformerLayer(nn.Module):
    """Multi-head self-attention and a two-layer feed-forward, each with a residual add.

    LayerNorm is left out, as in YOLOv5 (its authors report better results without it).
    """

    def __init__(self, c, num_heads):
        super().__init__()
        self.q = nn.Linear(c, c, bias=False)
        self.k = nn.Linear(c, c, bias=False)
        self.v = nn.Linear(c, c, bias=False)
        self.ma = nn.MultiheadAttention(embed_dim=c, num_heads=num_heads)
        self.fc1 = nn.Linear(c, c, bias=False)
        self.fc2 = nn.Linear(c, c, bias=False)

    def forward(self, x):
        x = self.ma(self.q(x), self.k(x), self.v(x))[0] + x
        return self.fc2(self.fc1(x)) + x


class TransformerBlock(nn.Module):
    """Optional width-changing Conv, a learned position embedding, then TransformerLayers.

    Attention runs over the h*w positions: input (b, c, h, w) becomes (h*w, b, c) and back.
    """

    def __init__(self, c1, c2, num_heads, num_layers):
        super().__init__()
        self.conv = Conv(c1, c2) if c1 != c2 else None
        self.linear = nn.Linear(c2, c2)
        self.tr = nn.Sequential(*(TransformerLayer(c2, num_heads) for _ in range(num_layers)))
        self.c2 = c2

    def forward(self, x):
        if self.conv is not None:
            x = self.conv(x)
        b, _, h, w = x.shape
        tokens = x.flatten(2).permute(2, 0, 1)
        return self.tr(tokens + self.linear(tokens)).permute(1, 2, 0).reshape(b, self.c2, h, w)


class C3TR(C3):
    """C3 whose stack is one TransformerBlock of n layers with 4 heads."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        hidden = int(c2 * e)
        self.m = TransformerBlock(hidden, hidden, 4, n)


class SPP(nn.Module):
    """Spatial pyramid pooling: max-pools of several kernel sizes, stride 1, concatenated."""

    def __init__(self, c1, c2, k=(5, 9, 13)):
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)

    def forward(self, x):
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [pool(x) for pool in self.m], 1))


class C3SPP(C3):
    """C3 whose stack is an SPP."""

    def __init__(self, c1, c2, k=(5, 9, 13), shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, 1, shortcut, g, e)
        hidden = int(c2 * e)
        self.m = SPP(hidden, hidden, k)


class SPPF(nn.Module):
    """SPP-Fast: one k x k max-pool applied three times in series; same output as SPP(5, 9, 13)."""

    def __init__(self, c1, c2, k=5):
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x):
        x = self.cv1(x)
        once = self.m(x)
        twice = self.m(once)
        return self.cv2(torch.cat((x, once, twice, self.m(twice)), 1))


class GhostConv(nn.Module):
    """Ghost convolution (GhostNet): half the maps from a Conv, half from a cheap 5x5 depth-wise."""

    def __init__(self, c1, c2, k=1, s=1, g=1, act=True):
        super().__init__()
        hidden = c2 // 2
        self.cv1 = Conv(c1, hidden, k, s, None, g, act=act)
        self.cv2 = Conv(hidden, hidden, 5, 1, None, hidden, act=act)

    def forward(self, x):
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


class GhostBottleneck(nn.Module):
    """GhostConv pair with a residual add; stride 2 adds depth-wise downsampling on both paths."""

    def __init__(self, c1, c2, k=3, s=1):
        super().__init__()
        hidden = c2 // 2
        self.conv = nn.Sequential(
            GhostConv(c1, hidden, 1, 1),
            DWConv(hidden, hidden, k, s, act=False) if s == 2 else nn.Identity(),
            GhostConv(hidden, c2, 1, 1, act=False))
        self.shortcut = nn.Sequential(
            DWConv(c1, c1, k, s, act=False),
            Conv(c1, c2, 1, 1, act=False)) if s == 2 else nn.Identity()

    def forward(self, x):
        return self.conv(x) + self.shortcut(x)


class C3Ghost(C3):
    """C3 whose stack is GhostBottlenecks."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        hidden = int(c2 * e)
        self.m = nn.Sequential(*(GhostBottleneck(hidden, hidden) for _ in range(n)))


class MixConv2d(nn.Module):
    """Mixed depth-wise convolution (MixConv): output channels split across kernel sizes."""

    def __init__(self, c1, c2, k=(1, 3), s=1, equal_ch=True):
        super().__init__()
        groups = len(k)
        if equal_ch:  # the same number of channels per kernel size
            split = torch.linspace(0, groups - 1e-6, c2, device="cpu").floor()  # float32 as YOLOv5
            widths = [int((split == g).sum()) for g in range(groups)]
        else:  # the same number of parameters per kernel size
            b = [c2] + [0] * groups
            a = np.eye(groups + 1, groups, k=-1)
            a -= np.roll(a, 1, axis=1)
            a *= np.array(k) ** 2
            a[0] = 1
            widths = [int(w) for w in np.linalg.lstsq(a, b, rcond=None)[0].round()]
        self.m = nn.ModuleList(
            nn.Conv2d(c1, w, kk, s, kk // 2, groups=math.gcd(c1, w), bias=False)
            for kk, w in zip(k, widths))
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(torch.cat([conv(x) for conv in self.m], 1)))
