"""A fixture checkout's models/common.py, written for yolodiag's tests (not taken from YOLOv5):
classes named like stock ones (a Concat that behaves as the stock one, a C3 that does not) next
to blocks of this checkout's own, as a user's common.py holds them."""

import torch
from helpers import EXPANSION
from torch import nn


class Concat(nn.Module):
    """Behaves as the stock Concat: concatenation along a dimension."""

    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)


class C3(nn.Module):
    """Named like the stock C3 but not it: one convolution, no bottlenecks."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        self.cv = nn.Conv2d(c1, c2, 1)

    def forward(self, x):
        return self.cv(x)


class Down(nn.Module):
    """Registered in this checkout's channel-aware set."""

    def __init__(self, c1, c2):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2 * EXPANSION, 3, 2, 1)

    def forward(self, x):
        return self.conv(x)


class Plain(nn.Module):
    """Channel-aware constructor, but in none of this checkout's parse_model branches."""

    def __init__(self, c1, c2):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 1)

    def forward(self, x):
        return self.conv(x)


class Gate(nn.Module):
    """Has a parse_model branch of its own that no yolodiag rule mirrors."""

    def __init__(self, c1, c2):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 1)

    def forward(self, x):
        return self.conv(x)
