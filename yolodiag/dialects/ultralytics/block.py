"""Our own blocks of Ultralytics 8.4.190 (its `nn/modules/block.py` names), eval-free: the
bottlenecks, the CSP families built on them (C1, C2, C2f, C3 and its variants, C3k2,
BottleneckCSP, RepC3), the pyramid poolings SPP and SPPF, and the ResNet stage.

Same constructor signatures and attribute names as Ultralytics' classes (its state-dict keys);
the computation is written here from what each block does. Decisions parse_model makes after
construction arrive as keyword-only arguments (SPPF's `cv1_activated`).
"""

from __future__ import annotations

import torch
from torch import nn

from yolodiag.dialects.ultralytics.conv import Conv, DWConv, GhostConv, RepConv


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


class C1(nn.Module):
    """One 1x1 Conv, then n 3x3 Convs whose result is added back to it."""

    def __init__(self, c1, c2, n=1):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1, 1)
        self.m = nn.Sequential(*(Conv(c2, c2, 3) for _ in range(n)))

    def forward(self, x):
        y = self.cv1(x)
        return self.m(y) + y


class C2(nn.Module):
    """CSP with two halves: the first through n bottlenecks, the second as it is; both
    concatenated into a 1x1 Conv (only the last bottleneck's map is kept, unlike C2f)."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(self.c, self.c, shortcut, g, k=((3, 3), (3, 3)),
                                            e=1.0) for _ in range(n)))

    def forward(self, x):
        through, beside = self.cv1(x).chunk(2, 1)
        return self.cv2(torch.cat((self.m(through), beside), 1))


class C3(nn.Module):
    """CSP with three convolutions: two 1x1 branches of width c2 * e, one through n
    bottlenecks (1x1 then 3x3), concatenated into a 1x1 Conv."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, k=((1, 1), (3, 3)),
                                            e=1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


# The C3 variants below keep C3's convolutions and replace its bottleneck chain `m` after
# C3 built it, as Ultralytics does: a seeded build then draws its initial weights in the same
# order as Ultralytics' and starts from the same numbers.


class C3x(C3):
    """C3 whose bottlenecks use cross kernels: 1x3 then 3x1."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.c_ = int(c2 * e)
        self.m = nn.Sequential(*(Bottleneck(self.c_, self.c_, shortcut, g, k=((1, 3), (3, 1)),
                                            e=1) for _ in range(n)))


class C3k(C3):
    """C3 whose bottlenecks use `k` x `k` kernels in both convolutions."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5, k=3):
        super().__init__(c1, c2, n, shortcut, g, e)
        hidden = int(c2 * e)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, k=(k, k), e=1.0)
                                 for _ in range(n)))


class GhostBottleneck(nn.Module):
    """GhostConv -> (stride 2: depth-wise Conv) -> linear GhostConv, plus a shortcut (the input
    itself, or at stride 2 a depth-wise then 1x1 Conv, both linear)."""

    def __init__(self, c1, c2, k=3, s=1):
        super().__init__()
        hidden = c2 // 2
        downsample = s == 2
        self.conv = nn.Sequential(
            GhostConv(c1, hidden, 1, 1),
            DWConv(hidden, hidden, k, s, act=False) if downsample else nn.Identity(),
            GhostConv(hidden, c2, 1, 1, act=False))
        self.shortcut = nn.Sequential(
            DWConv(c1, c1, k, s, act=False),
            Conv(c1, c2, 1, 1, act=False)) if downsample else nn.Identity()

    def forward(self, x):
        return self.conv(x) + self.shortcut(x)


class C3Ghost(C3):
    """C3 whose bottleneck chain is n GhostBottlenecks (`shortcut` and `g` do not reach them)."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        hidden = int(c2 * e)
        self.m = nn.Sequential(*(GhostBottleneck(hidden, hidden) for _ in range(n)))


class RepC3(nn.Module):
    """Two 1x1 branches, one through n RepConvs, summed (not concatenated), then a 1x1 Conv to
    c2 unless the hidden width already is c2."""

    def __init__(self, c1, c2, n=3, e=1.0):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.m = nn.Sequential(*(RepConv(hidden, hidden) for _ in range(n)))
        self.cv3 = Conv(hidden, c2, 1, 1) if hidden != c2 else nn.Identity()

    def forward(self, x):
        return self.cv3(self.m(self.cv1(x)) + self.cv2(x))


class BottleneckCSP(nn.Module):
    """The original CSP bottleneck: a Conv and n bottlenecks closed by a plain 1x1 conv, beside a
    plain 1x1 conv of the input; BatchNorm and SiLU over both, then a 1x1 Conv."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = nn.Conv2d(c1, hidden, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(hidden, hidden, 1, 1, bias=False)
        self.cv4 = Conv(2 * hidden, c2, 1, 1)
        self.bn = nn.BatchNorm2d(2 * hidden)
        # Always SiLU in Ultralytics: a YAML's `activation:` reaches the Convs only.
        self.act = nn.SiLU()
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0)
                                 for _ in range(n)))

    def forward(self, x):
        through = self.cv3(self.m(self.cv1(x)))
        return self.cv4(self.act(self.bn(torch.cat((through, self.cv2(x)), 1))))


class C3k2(C2f):
    """C2f whose n inner blocks are chosen by the row: with `attn` a Bottleneck followed by a
    PSABlock (YOLO26's last head stage), else with `c3k` a C3k of two 3x3 bottlenecks (the table
    sets it for scales m, l, x), else a Bottleneck of half width (e = 0.5, unlike C2f's).

    Arguments in Ultralytics' order, so a row `[c1, c2, n, c3k, e, attn]` builds unchanged."""

    def __init__(self, c1, c2, n=1, c3k=False, e=0.5, attn=False, g=1, shortcut=True):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.ModuleList(self._inner_block(c3k, attn, g, shortcut) for _ in range(n))

    def _inner_block(self, c3k, attn, g, shortcut) -> nn.Module:
        if attn:
            # Imported here: attention.py builds on C2f from this module.
            from yolodiag.dialects.ultralytics.attention import PSABlock

            return nn.Sequential(Bottleneck(self.c, self.c, shortcut, g),
                                 PSABlock(self.c, attn_ratio=0.5,
                                          num_heads=max(self.c // 64, 1)))
        if c3k:
            return C3k(self.c, self.c, 2, shortcut, g)
        return Bottleneck(self.c, self.c, shortcut, g)


class SPP(nn.Module):
    """Spatial pyramid pooling: a 1x1 Conv to half width, its stride-1 max pools of each kernel in
    `k` concatenated with it, then a 1x1 Conv."""

    def __init__(self, c1, c2, k=(5, 9, 13)):
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=size, stride=1, padding=size // 2)
                               for size in k)

    def forward(self, x):
        y = self.cv1(x)
        return self.cv2(torch.cat([y, *(pool(y) for pool in self.m)], 1))


class SPPF(nn.Module):
    """Fast SPP: one `k` x `k` stride-1 max pool applied n times in a row (5, 3 times covers
    SPP's 5, 9, 13), the n + 1 maps concatenated into a 1x1 Conv; plus the input when
    `shortcut` and the widths allow.

    cv1 has no activation unless `cv1_activated`: Ultralytics' parse_model gives it the default
    one after construction for rows of at most 3 arguments (all before YOLO26); the table
    passes that decision here."""

    def __init__(self, c1, c2, k=5, n=3, shortcut=False, *, cv1_activated: bool = False):
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1, act=cv1_activated)
        self.cv2 = Conv(hidden * (n + 1), c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.n = n
        self.add = shortcut and c1 == c2

    def forward(self, x):
        maps = [self.cv1(x)]
        for _ in range(self.n):
            maps.append(self.m(maps[-1]))
        y = self.cv2(torch.cat(maps, 1))
        return x + y if self.add else y


class ResNetBlock(nn.Module):
    """ResNet bottleneck: 1x1, 3x3 (stride `s`), linear 1x1 to e * c2, plus the input (projected
    by a linear strided 1x1 Conv when the shape changes), then ReLU."""

    def __init__(self, c1, c2, s=1, e=4):
        super().__init__()
        c3 = e * c2
        self.cv1 = Conv(c1, c2, k=1, s=1, act=True)
        self.cv2 = Conv(c2, c2, k=3, s=s, p=1, act=True)
        self.cv3 = Conv(c2, c3, k=1, act=False)
        projected = s != 1 or c1 != c3
        self.shortcut = nn.Sequential(Conv(c1, c3, k=1, s=s, act=False)) if projected \
            else nn.Identity()

    def forward(self, x):
        return torch.relu(self.cv3(self.cv2(self.cv1(x))) + self.shortcut(x))


class ResNetLayer(nn.Module):
    """A ResNet stage: the stem (7x7 stride-2 Conv to c2, 3x3 stride-2 max pool) when `is_first`,
    else n ResNetBlocks, the first with stride `s`; the output is c2 wide for the stem, e * c2
    otherwise."""

    def __init__(self, c1, c2, s=1, is_first=False, n=1, e=4):
        super().__init__()
        self.is_first = is_first
        if is_first:
            self.layer = nn.Sequential(Conv(c1, c2, k=7, s=2, p=3, act=True),
                                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        else:
            self.layer = nn.Sequential(ResNetBlock(c1, c2, s, e=e),
                                       *(ResNetBlock(e * c2, c2, 1, e=e) for _ in range(n - 1)))

    def forward(self, x):
        return self.layer(x)
