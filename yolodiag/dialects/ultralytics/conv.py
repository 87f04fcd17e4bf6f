"""Our own convolution layers of Ultralytics 8.4.190 (its `nn/modules/conv.py` names), eval-free.

Each class computes what the Ultralytics layer of that name computes, with the same constructor
signature (rows written for Ultralytics build unchanged) and the same attribute names (`conv`,
`bn`, `cv1`, ...): they are the state-dict keys of its checkpoints. The default activation of
`Conv` comes from the build in progress (`default_activation`), never from a class attribute,
so a YAML's `activation:` reaches only the model it belongs to (Ultralytics restores its class
attribute after parse_model; a scoped value gives the same models without the global).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

_default_activation: contextvars.ContextVar[Callable[[], nn.Module]] = contextvars.ContextVar(
    "ultralytics_default_activation", default=nn.SiLU)


@contextlib.contextmanager
def default_activation(factory: Callable[[], nn.Module] | None) -> Iterator[None]:
    """Within the block, `Conv(..., act=True)` gets a fresh `factory()` instead of nn.SiLU()."""
    token = _default_activation.set(factory or nn.SiLU)
    try:
        yield
    finally:
        _default_activation.reset(token)


def make_default_activation() -> nn.Module:
    """The activation `act=True` stands for in the build in progress."""
    return _default_activation.get()()


def autopad(k: int | Sequence[int], p: int | Sequence[int] | None = None, d: int = 1):
    """'Same' padding for stride 1: half the (dilated) kernel, per dimension."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


def activation(act: bool | nn.Module) -> nn.Module:
    """`act` as Ultralytics reads it: True the default, a module itself, anything else none."""
    if act is True:
        return make_default_activation()
    return act if isinstance(act, nn.Module) else nn.Identity()


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation."""

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = activation(act)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class DWConv(Conv):
    """Depth-wise convolution: groups = gcd(c1, c2)."""

    def __init__(self, c1, c2, k=1, s=1, d=1, act=True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


class DWConvTranspose2d(nn.ConvTranspose2d):
    """Depth-wise transposed convolution (with bias)."""

    def __init__(self, c1, c2, k=1, s=1, p1=0, p2=0):
        super().__init__(c1, c2, k, s, p1, p2, groups=math.gcd(c1, c2))


class ConvTranspose(nn.Module):
    """ConvTranspose2d -> BatchNorm2d (or none, then the transposed conv has a bias) -> act."""

    def __init__(self, c1, c2, k=2, s=2, p=0, bn=True, act=True):
        super().__init__()
        self.conv_transpose = nn.ConvTranspose2d(c1, c2, k, s, p, bias=not bn)
        self.bn = nn.BatchNorm2d(c2) if bn else nn.Identity()
        self.act = activation(act)

    def forward(self, x):
        return self.act(self.bn(self.conv_transpose(x)))


class Focus(nn.Module):
    """Space-to-depth (the 4 pixel phases stacked as channels), then a Conv."""

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, act=True):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x):
        phases = (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2])
        return self.conv(torch.cat(phases, 1))


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
