"""Detection heads: YOLOv5 v7.0's Detect and Segment (with Proto), eval-free and side-effect free.

`forward` maps the per-level feature maps to raw per-level predictions and nothing else: it
never writes into its input list and returns the same kind of value in train and eval mode.
`decode` turns raw maps into boxes in input pixels, and `assemble` gives the model's output in
YOLOv5's shape for the current mode. Attribute names (`m`, `anchors`, `nc`, `no`, `na`, `nl`,
`proto`) are YOLOv5's: they are state-dict keys or read by code that handles its checkpoints.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from yolodiag.dialects.yolov5.blocks import Conv


class Detect(nn.Module):
    """One 1x1 conv per level predicting, per anchor, (x, y, w, h, objectness, nc class scores).

    Raw map i has shape (batch, na, ny, nx, no). `anchors` is (nl, na, 2) in grid units of each
    level once the builder has measured `stride` (pixels per grid cell, per level).
    """

    def __init__(self, nc=80, anchors=(), ch=(), inplace=True):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))
        # Measured by the builder; not in YOLOv5's state dict, so not persistent here either.
        self.register_buffer("stride", torch.ones(self.nl), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.inplace = inplace

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        if not len(x) == len(self.m) == self.nl:  # YOLOv5 crashes here too, one way or another
            raise ValueError(f"{self.nl} anchor rows and {len(self.m)} output convolutions "
                             f"for {len(x)} inputs")
        return [self._raw(conv(xi)) for conv, xi in zip(self.m, x)]

    def _raw(self, y: Tensor) -> Tensor:
        bs, _, ny, nx = y.shape
        return y.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()

    def grids(self, level: int, ny: int, nx: int) -> tuple[Tensor, Tensor]:
        """Cell offsets (minus 0.5) and anchor sizes in pixels, both (1, na, ny, nx, 2)."""
        anchors = self.anchors[level]
        shape = (1, self.na, ny, nx, 2)
        y = torch.arange(ny, device=anchors.device, dtype=anchors.dtype)
        x = torch.arange(nx, device=anchors.device, dtype=anchors.dtype)
        yv, xv = torch.meshgrid(y, x, indexing="ij")
        grid = torch.stack((xv, yv), 2).expand(shape) - 0.5
        anchor_grid = (anchors * self.stride[level]).view(1, self.na, 1, 1, 2).expand(shape)
        return grid, anchor_grid

    def decode(self, raw: list[Tensor]) -> Tensor:
        """Raw maps -> (batch, sum of na*ny*nx, no): xywh in pixels, sigmoid scores."""
        levels = []
        for i, r in enumerate(raw):
            bs, _, ny, nx, _ = r.shape
            grid, anchor_grid = self.grids(i, ny, nx)
            xy, wh, scores = r.sigmoid().split((2, 2, self.nc + 1), 4)
            xy = (xy * 2 + grid) * self.stride[i]
            wh = (wh * 2) ** 2 * anchor_grid
            levels.append(torch.cat((xy, wh, scores), 4).view(bs, -1, self.no))
        return torch.cat(levels, 1)

    def assemble(self, out, training: bool):
        """The model output in YOLOv5's form: raw maps in train mode, (decoded, raw) in eval."""
        return out if training else (self.decode(out), out)

    def raw_maps(self, out) -> list[Tensor]:
        """The per-level raw maps inside whatever `forward` returned (YOLOv5's stride probe)."""
        return out

    @torch.no_grad()
    def initialize_biases(self, strides: Tensor) -> None:
        """YOLOv5's prior: about 8 objects per 640x640 image per level, class prob 0.6 / nc.

        `strides` is a float32 CPU tensor (as YOLOv5's), so the priors round exactly as there,
        also when the model itself lives on the meta device.
        """
        for conv, s in zip(self.m, strides):
            b = conv.bias.view(self.na, -1)
            b[:, 4] += objectness_prior_logit(s)
            b[:, 5:5 + self.nc] += class_prior_logit(self.nc)


def objectness_prior_logit(stride) -> float:
    """YOLOv5's objectness bias init: about 8 objects per 640x640 image per level, spread over
    its (640 / stride)^2 cells. `stride` may be a float32 tensor: the arithmetic then rounds as
    YOLOv5's does."""
    return math.log(8 / (640 / stride) ** 2)


def objectness_prior(stride: float) -> float:
    """The objectness a fresh Detect level predicts in each cell: the sigmoid of its bias."""
    return 1 / (1 + math.exp(-objectness_prior_logit(stride)))


def class_prior_logit(nc: int) -> float:
    """YOLOv5's class bias init: each class at probability about 0.6 / (nc - 1)."""
    return math.log(0.6 / (nc - 0.99999))


class Proto(nn.Module):
    """Mask prototypes: Conv 3x3, 2x nearest upsample, Conv 3x3, Conv 1x1 to c2 prototypes."""

    def __init__(self, c1, c_=256, c2=32):
        super().__init__()
        self.cv1 = Conv(c1, c_, k=3)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.cv2 = Conv(c_, c_, k=3)
        self.cv3 = Conv(c_, c2)

    def forward(self, x):
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


class Segment(Detect):
    """Detect plus nm mask coefficients per anchor and a Proto on the first level."""

    def __init__(self, nc=80, anchors=(), nm=32, npr=256, ch=(), inplace=True):
        super().__init__(nc, anchors, ch, inplace)
        self.nm = nm
        self.npr = npr
        self.no = 5 + nc + nm
        # Built a second time with the wider output, as YOLOv5 does (same random draws).
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.proto = Proto(ch[0], npr, nm)

    def forward(self, x: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        return super().forward(x), self.proto(x[0])

    def decode(self, raw: list[Tensor]) -> Tensor:
        """As Detect, but mask coefficients are passed through without a sigmoid."""
        levels = []
        for i, r in enumerate(raw):
            bs, _, ny, nx, _ = r.shape
            grid, anchor_grid = self.grids(i, ny, nx)
            xy, wh, scores, masks = r.split((2, 2, self.nc + 1, self.nm), 4)
            xy = (xy.sigmoid() * 2 + grid) * self.stride[i]
            wh = (wh.sigmoid() * 2) ** 2 * anchor_grid
            levels.append(torch.cat((xy, wh, scores.sigmoid(), masks), 4).view(bs, -1, self.no))
        return torch.cat(levels, 1)

    def assemble(self, out, training: bool):
        """(raw, protos) in train mode, (decoded, protos, raw) in eval, as YOLOv5."""
        raw, protos = out
        return out if training else (self.decode(raw), protos, raw)

    def raw_maps(self, out) -> list[Tensor]:
        return out[0]
