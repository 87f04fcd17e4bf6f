"""Broken blocks for the gradient checks: each is the seed's BasicBlock (or a one-line layer)
with one defect that a YAML edit or a pasted block really brings. The tests register them in
the module table (`MUTANTS`) the way `--modules` will; YOLOv5 itself never sees them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolodiag.reference.seed import BasicBlock
from yolodiag.reference.table import ModuleEntry


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


MUTANTS = {name: ModuleEntry(name, f"mutants:{name}", "channels")
           for name in ("DetachingBlock", "NanBlock", "NoAddBlock", "DetachedShortcutBlock",
                        "DeadReluBlock", "Rescaled")}
