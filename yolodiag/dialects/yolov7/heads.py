"""YOLOv7's detection heads: Detect, IDetect (with YOLOR's implicit layers) and IAuxDetect
(lead levels plus auxiliary ones), eval-free and side-effect free.

`forward` maps the per-level feature maps to raw per-level predictions, (batch, na, ny, nx, no)
each, and nothing else: it never writes into its input list. `decode` turns raw maps into boxes
in input pixels as YOLOv7 does (xy = (2 sigmoid - 0.5 + cell) * stride, wh = (2 sigmoid)^2 *
anchor in pixels), and `assemble` gives the model's output in YOLOv7's shape for the mode.
Attribute names (`m`, `m2`, `ia`, `im`, `anchors`, `anchor_grid`, `nc`, `no`, `na`, `nl`) are
YOLOv7's: they are its state-dict keys. Unlike YOLOv5's, `anchor_grid` (the anchors in pixels,
(nl, 1, na, 1, 1, 2)) is a registered buffer, so it is in the state dict too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from yolodiag.dialects.yolov7.blocks import ImplicitA, ImplicitM


class Detect(nn.Module):
    """One 1x1 conv per level predicting, per anchor, (x, y, w, h, objectness, nc scores)."""

    lead_levels_only = False  # IAuxDetect: its auxiliary maps follow the lead ones

    def __init__(self, nc: int = 80, anchors=(), ch=()):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        rows = torch.tensor(anchors).float().view(self.nl, -1, 2)
        self.register_buffer("anchors", rows)
        self.register_buffer("anchor_grid", rows.clone().view(self.nl, 1, -1, 1, 1, 2))
        # Measured by the builder; YOLOv7 keeps it out of the state dict too.
        self.register_buffer("stride", torch.ones(self.nl), persistent=False)
        self._make_convs(ch)

    def _make_convs(self, ch) -> None:
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def _level(self, i: int, x: Tensor) -> Tensor:
        return self.m[i](x)

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        if len(x) != len(self.m) * (2 if self.lead_levels_only else 1) or len(self.m) != self.nl:
            raise ValueError(f"{self.nl} anchor rows and {len(self.m)} output convolutions "
                             f"for {len(x)} inputs")
        return [self._raw(self._level(i, xi)) for i, xi in enumerate(x[:self.nl])]

    def _raw(self, y: Tensor) -> Tensor:
        bs, _, ny, nx = y.shape
        return y.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()

    def grids(self, level: int, ny: int, nx: int) -> tuple[Tensor, Tensor]:
        """Cell coordinates (YOLOv7 subtracts the 0.5 in the formula, not in the grid) and anchor
        sizes in pixels (its anchor_grid), both (1, na, ny, nx, 2)."""
        anchor_grid = self.anchor_grid[level]
        y = torch.arange(ny, device=anchor_grid.device, dtype=anchor_grid.dtype)
        x = torch.arange(nx, device=anchor_grid.device, dtype=anchor_grid.dtype)
        yv, xv = torch.meshgrid(y, x, indexing="ij")
        shape = (1, self.na, ny, nx, 2)
        grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).expand(shape)
        return grid, anchor_grid.view(1, self.na, 1, 1, 2).expand(shape)

    def decode(self, raw: list[Tensor]) -> Tensor:
        """Raw lead maps -> (batch, sum of na*ny*nx, no): xywh in pixels, sigmoid scores."""
        levels = []
        for i, r in enumerate(raw):
            bs, _, ny, nx, _ = r.shape
            grid, anchor_grid = self.grids(i, ny, nx)
            y = r.sigmoid()
            xy = (y[..., 0:2] * 2.0 - 0.5 + grid) * self.stride[i]
            wh = (y[..., 2:4] * 2) ** 2 * anchor_grid
            levels.append(torch.cat((xy, wh, y[..., 4:]), 4).view(bs, -1, self.no))
        return torch.cat(levels, 1)

    def assemble(self, out: list[Tensor], training: bool):
        """YOLOv7's model output: the raw maps in train mode, (decoded, maps) in eval."""
        return out if training else (self.decode(out), out)

    def raw_maps(self, out) -> list[Tensor]:
        """The per-level maps the stride probe measures (the lead ones)."""
        return out[:self.nl]

    @torch.no_grad()
    def initialize_biases(self, strides: Tensor) -> None:
        """YOLOv7's prior: about 8 objects per 640x640 image per level, class probability
        0.6 / (nc - 0.99) (YOLOv5 v7.0 subtracts 0.99999)."""
        for convs in self._prior_convs():
            for conv, s in zip(convs, strides):  # s: a float32 tensor, rounding as YOLOv7's
                b = conv.bias.view(self.na, -1)
                b[:, 4] += objectness_prior_logit(s)
                b[:, 5:] += class_prior_logit(self.nc)

    def _prior_convs(self) -> list[nn.ModuleList]:
        return [self.m]


def objectness_prior_logit(stride) -> float:
    """YOLOv7's objectness bias init: about 8 objects per 640x640 image per level, spread over
    its (640 / stride)^2 cells. `stride` may be a float32 tensor: the arithmetic then rounds as
    YOLOv7's does."""
    return math.log(8 / (640 / stride) ** 2)


def class_prior_logit(nc: int) -> float:
    """YOLOv7's class bias init: each class at probability about 0.6 / (nc - 0.99)."""
    return math.log(0.6 / (nc - 0.99))


class IDetect(Detect):
    """Detect with YOLOR's implicit knowledge: ImplicitA added to each input, ImplicitM
    multiplying each conv output."""

    def _make_convs(self, ch) -> None:
        super()._make_convs(ch)
        self.ia = nn.ModuleList(ImplicitA(c) for c in ch)
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch)

    def _level(self, i: int, x: Tensor) -> Tensor:
        return self.im[i](self.m[i](self.ia[i](x)))


class IAuxDetect(IDetect):
    """IDetect on the first nl inputs (the lead levels) and a plain 1x1 conv on each of the last
    nl (auxiliary levels, at the lead levels' sizes). Train mode gives 2 * nl maps, lead then
    auxiliary; eval decodes only the lead ones."""

    lead_levels_only = True

    def _make_convs(self, ch) -> None:
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch[:self.nl])
        self.m2 = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch[self.nl:])
        self.ia = nn.ModuleList(ImplicitA(c) for c in ch[:self.nl])
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch[:self.nl])

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        lead = super().forward(x)
        return lead + [self._raw(conv(xi)) for conv, xi in zip(self.m2, x[self.nl:])]

    def assemble(self, out: list[Tensor], training: bool):
        lead = out[:self.nl]
        return out if training else (self.decode(lead), lead)

    def _prior_convs(self) -> list[nn.ModuleList]:
        return [self.m, self.m2]
