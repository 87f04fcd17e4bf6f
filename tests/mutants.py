"""Broken blocks for the gradient checks: each is the seed's BasicBlock (or a one-line layer)
with one defect that a YAML edit or a pasted block really brings. The tests register them in
the module table (`MUTANTS`) the way `--modules` does; YOLOv5 itself never sees them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolodiag.dialects.yolov5.blocks import Conv
from yolodiag.dialects.yolov5.heads import Detect
from yolodiag.dialects.yolov5.seed import BasicBlock
from yolodiag.dialects.yolov5.table import ModuleEntry


class DetachingBlock(BasicBlock):
    """Detaches its input: nothing flows back to the layers before it (YD601)."""

    def forward(self, x):
        return super().forward(x.detach())


class NanBlock(BasicBlock):
    """Divides by a norm that is zero: Inf, then NaN after the next BatchNorm (YD602)."""

    def forward(self, x):
        out = super().forward(x)
        return out / (x - x).sum()


class NoAddBlock(BasicBlock):
    """Declares a shortcut but its forward forgets to add it (YD606)."""

    def forward(self, x):
        return F.relu(self.layer(x))


class DetachedShortcutBlock(BasicBlock):
    """Adds a detached copy of its input: the branch trains, the shortcut carries nothing
    (YD606)."""

    def forward(self, x):
        out = self.layer(x)
        out += self.shortcut(x.detach())
        return F.relu(out)


class DeadReluBlock(BasicBlock):
    """Shifts three quarters of its channels far below zero before the last ReLU (YD605)."""

    def __init__(self, in_channels, out_channels, stride=1, padding=1):
        super().__init__(in_channels, out_channels, stride, padding)
        shift = torch.zeros(1, out_channels, 1, 1)
        shift[:, : out_channels * 3 // 4] = 100.0
        self.register_buffer("shift", shift)

    def forward(self, x):
        out = self.layer(x)
        out += self.shortcut(x)
        return F.relu(out - self.shift)


class Rescaled(nn.Module):
    """A learnable per-channel gain stored divided by `factor` and multiplied back in forward:
    the output is the input, but the gain's gradient is `factor` times too large for its size
    (factor 1e4: YD604) or too small (factor 1e-4: YD603)."""

    def __init__(self, c1, c2, factor=1.0):
        super().__init__()
        self.factor = float(factor)
        self.gain = nn.Parameter(torch.full((1, c2, 1, 1), 1.0 / self.factor))

    def forward(self, x):
        return x * (self.gain * self.factor)


class Overflowing(Conv):
    """A Conv whose output is scaled by 1e5: fine in float32 (the next BatchNorm normalises
    it), Inf in float16, whose range ends at 65504 (YD703 under --amp)."""

    def forward(self, x):
        return super().forward(x) * 1e5


class FrozenStatsConv(Conv):
    """A Conv whose BatchNorm has momentum 0: its running statistics never follow the batch,
    so eval mode normalises with the initial mean 0 and variance 1 (YD704)."""

    def __init__(self, c1, c2, k=1, s=1):
        super().__init__(c1, c2, k, s)
        self.bn = _FrozenStatsBatchNorm(c2)


class _FrozenStatsBatchNorm(nn.BatchNorm2d):
    """Not exactly nn.BatchNorm2d, so the builder's momentum 0.03 does not reach it."""

    def __init__(self, c):
        super().__init__(c, eps=1e-3, momentum=0.0)


class NoPriorDetect(Detect):
    """Detect without YOLOv5's bias priors: every cell starts at objectness 0.5 (YD706)."""

    def initialize_biases(self, strides):
        with torch.no_grad():
            for conv in self.m:
                conv.bias.zero_()


class DetachedDetect(Detect):
    """Detect that detaches what it computes: no parameter gets a gradient, the loss cannot
    fall (YD702). (Detaching anywhere before the head does not stop the loss from falling on
    one batch: the layers after the detach still learn; gradflow's YD601 finds those.)"""

    def forward(self, x):
        return [level.detach() for level in super().forward(x)]


MUTANTS = {name: ModuleEntry(name, f"mutants:{name}", "channels")
           for name in ("DetachingBlock", "NanBlock", "NoAddBlock", "DetachedShortcutBlock",
                        "DeadReluBlock", "Rescaled", "Overflowing", "FrozenStatsConv")}
MUTANTS.update({name: ModuleEntry(name, f"mutants:{name}", "detect")
                for name in ("NoPriorDetect", "DetachedDetect")})
