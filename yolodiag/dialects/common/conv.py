"""The convolution layers YOLOv5 v7.0 and Ultralytics 8.4.190 define alike (same signatures,
same attribute names, same computation), written once: Conv, DWConv, DWConvTranspose2d, Focus,
`autopad`, and the build-scoped default activation.

The default activation of `Conv` comes from the build in progress (`default_activation`), never
from a class attribute, so a YAML's `activation:` reaches only the model it belongs to (both
families keep it as process-wide state on the class; a scoped value gives the same models
without the global). Each family's own blocks import these from here.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

_default_activation: contextvars.ContextVar[Callable[[], nn.Module]] = contextvars.ContextVar(
    "default_activation", default=nn.SiLU)


@contextlib.contextmanager
def default_activation(factory: Callable[[], nn.Module] | None) -> Iterator[None]:
    """Within the block, `Conv(..., act=True)` gets a fresh `factory()` instead of nn.SiLU()."""
    token = _default_activation.set(factory or nn.SiLU)
    try:
        yield
    finally:
        _default_activation.reset(token)


def autopad(k: int | Sequence[int], p: int | Sequence[int] | None = None, d: int = 1):
    """'Same' padding for stride 1: half the (dilated) kernel, per dimension."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


def activation(act: bool | nn.Module) -> nn.Module:
    """`act` as both families read it: True the build's default, a module itself, anything
    else none."""
    if act is True:
        return _default_activation.get()()
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


class Focus(nn.Module):
    """Space-to-depth (the 4 pixel phases stacked as channels), then a Conv."""

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, act=True):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x):
        phases = (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2])
        return self.conv(torch.cat(phases, 1))
