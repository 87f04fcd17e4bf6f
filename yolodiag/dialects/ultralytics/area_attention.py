"""Our own area-attention blocks of YOLO12 in Ultralytics 8.4.190 (its `nn/modules/block.py`
names AAttn, ABlock, A2C2f), eval-free.

Area attention is self-attention restricted to `area` equal strips of the map (consecutive runs
of positions in row-major order), which keeps its cost down at the high-resolution levels.
Constructor signatures, attribute names and weight initialisation are Ultralytics'; the forward
passes are written here from the arithmetic.
"""

from __future__ import annotations

import torch
from torch import nn

from yolodiag.dialects.ultralytics.block import C3k
from yolodiag.dialects.ultralytics.conv import Conv

# ABlock's width per head: A2C2f gives its attention blocks c_ // 32 heads.
CHANNELS_PER_HEAD = 32


class AAttn(nn.Module):
    """Multi-head self-attention within each of `area` strips, plus a depth-wise 7x7 positional
    term on the values: (B, dim, H, W) -> (B, dim, H, W), H * W divisible by `area`.

    One 1x1 Conv gives, per position and head, its query, key and value (head_dim = dim //
    num_heads channels each, stacked in that order); scores are scaled by head_dim ** -0.5 and
    normalised over the attended positions of the same strip.
    """

    def __init__(self, dim, num_heads, area=1):
        super().__init__()
        self.area = area
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.all_head_dim = self.head_dim * num_heads
        self.qkv = Conv(dim, self.all_head_dim * 3, 1, act=False)
        self.proj = Conv(self.all_head_dim, dim, 1, act=False)
        self.pe = Conv(self.all_head_dim, self.all_head_dim, 7, 1, 3, g=self.all_head_dim,
                       act=False)

    def forward(self, x):
        batch, _, height, width = x.shape
        tokens = self.qkv(x).flatten(2).transpose(1, 2)  # (B, H * W, 3 * all_head_dim)
        strips = tokens.reshape(batch * self.area, height * width // self.area, self.num_heads,
                                3 * self.head_dim)
        query, key, value = strips.split(self.head_dim, dim=-1)  # each (B * area, n, heads, d)
        # weights[b, h, i, j]: how much position i of a strip takes from its position j.
        scores = torch.einsum("bihc,bjhc->bhij", query * self.head_dim ** -0.5, key)
        attended = torch.einsum("bhij,bjhc->bihc", scores.softmax(dim=-1), value)

        def as_map(per_strip: torch.Tensor) -> torch.Tensor:
            return per_strip.reshape(batch, height, width, self.all_head_dim).permute(0, 3, 1, 2)

        return self.proj(as_map(attended) + self.pe(as_map(value)))


class ABlock(nn.Module):
    """Residual area attention then a residual two-Conv MLP (hidden width dim * mlp_ratio):
    (B, dim, H, W) -> (B, dim, H, W). Its convolution kernels start from a truncated normal of
    std 0.02 (biases, where present, from 0), not torch's default."""

    def __init__(self, dim, num_heads, mlp_ratio=1.2, area=1):
        super().__init__()
        self.attn = AAttn(dim, num_heads=num_heads, area=area)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(Conv(dim, hidden, 1), Conv(hidden, dim, 1, act=False))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class A2C2f(nn.Module):
    """YOLO12's C2f with area attention: a 1x1 Conv to c_ = c2 * e channels, n stages applied
    one after another (two ABlocks each when `a2`, else a C3k), every stage's output kept and
    all concatenated into a 1x1 Conv to c2. With `a2` and `residual` (the `True, 1.2` parse_model
    appends at scales l and x) the result is x + gamma * it, gamma a learned per-channel scale
    starting at 0.01. (B, c1, H, W) -> (B, c2, H, W)."""

    def __init__(self, c1, c2, n=1, a2=True, area=1, residual=False, mlp_ratio=2.0, e=0.5,
                 g=1, shortcut=True):
        super().__init__()
        hidden = int(c2 * e)
        if hidden % CHANNELS_PER_HEAD:
            raise ValueError(f"A2C2f needs c2 * e divisible by {CHANNELS_PER_HEAD} (its "
                             f"attention heads are {CHANNELS_PER_HEAD} wide): c2={c2}, e={e} "
                             f"gives {hidden}")
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv((1 + n) * hidden, c2, 1)
        self.gamma = nn.Parameter(torch.full((c2,), 0.01)) if a2 and residual else None
        self.m = nn.ModuleList(self._stage(hidden, a2, area, mlp_ratio, g, shortcut)
                               for _ in range(n))

    @staticmethod
    def _stage(width, a2, area, mlp_ratio, g, shortcut) -> nn.Module:
        if a2:
            heads = width // CHANNELS_PER_HEAD
            return nn.Sequential(*(ABlock(width, heads, mlp_ratio, area) for _ in range(2)))
        return C3k(width, width, 2, shortcut, g)

    def forward(self, x):
        stages = [self.cv1(x)]
        for stage in self.m:
            stages.append(stage(stages[-1]))
        y = self.cv2(torch.cat(stages, 1))
        if self.gamma is None:
            return y
        return x + self.gamma.view(1, -1, 1, 1) * y
