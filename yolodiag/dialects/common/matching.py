"""The anchor-based candidate matcher YOLOv5 v7.0's build_targets and YOLOv7's build_targets /
find_3_positive share: which (image, anchor, cell) of each level may answer for each box.

A box matches an anchor when neither side ratio reaches `anchor_t`; each match takes its
centre cell and the up-to-two neighbour cells whose edge the centre lies within half a cell of.
YOLOv5's loss and YOLOv7's ComputeLoss train these candidates as they are; YOLOv7's
ComputeLossOTA chooses among them (../yolov7/ota.py). The order of the rows is the real code's,
because objectness targets are written by index and the last write wins. Nothing here moves
tensors to a device of its own choosing: everything follows the targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

NEIGHBOUR_REACH = 0.5  # g: a centre within half a cell of an edge also uses that neighbour
# Subtracted from the centre before truncation: centre, left, up, right, down (the real order).
_OFFSETS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))


@dataclass(frozen=True)
class LevelAssignment:
    """The positives of one level, n rows each.

    `image`, `anchor`, `gj`, `gi`: (n,) long, where in the raw map (batch, na, ny, nx, no) each
    positive is read; `box`: (n, 4) target (x, y) within the cell (may lie in [-0.5, 1.5]) and
    (w, h) in grid units; `cls`: (n,) long; `anchor_wh`: (n, 2) the anchor's size in grid units.
    """

    image: Tensor
    anchor: Tensor
    gj: Tensor
    gi: Tensor
    box: Tensor
    cls: Tensor
    anchor_wh: Tensor
    na: int

    @property
    def positives(self) -> int:
        return int(self.image.shape[0])

    @property
    def positives_per_anchor(self) -> tuple[int, ...]:
        return tuple(torch.bincount(self.anchor, minlength=self.na).tolist())


@dataclass(frozen=True)
class Assignment:
    """Target assignment over all levels, and its statistics.

    `matched` is (n_targets,) bool: the box passed the anchor ratio test for some anchor of
    some level. The statistics are read lazily so the loss itself never waits on the device.
    """

    levels: tuple[LevelAssignment, ...]
    matched: Tensor

    @property
    def positives(self) -> tuple[int, ...]:
        """Positives per level (each matched box counts once per anchor and per cell)."""
        return tuple(level.positives for level in self.levels)

    @property
    def positives_per_anchor(self) -> tuple[tuple[int, ...], ...]:
        """Positives per level, per anchor: [level][anchor]."""
        return tuple(level.positives_per_anchor for level in self.levels)

    @property
    def unmatched(self) -> tuple[int, ...]:
        """Indices into the targets of boxes that no anchor of any level takes: never learnt."""
        return tuple((~self.matched).nonzero().flatten().tolist())


def assign(targets: Tensor, anchors_grid: Tensor, grid_shapes: Sequence[tuple[int, int]],
           anchor_t: float = 4.0) -> Assignment:
    """The candidate positives per level for targets (n, 6).

    `targets` rows are (image, class, x, y, w, h), xywh normalised to [0, 1];
    `anchors_grid` (nl, na, 2) anchor sizes in grid units; `grid_shapes` (ny, nx) per level.
    A box matches an anchor when neither side ratio (box/anchor or anchor/box) reaches
    `anchor_t`; each match takes its centre cell plus the up-to-two neighbours whose edge the
    centre is within half a cell of (never past the border cell). Rows are ordered centre
    first, then left, up, right, down, and inside each group anchor-major, target order.
    """
    matched = torch.zeros(targets.shape[0], dtype=torch.bool, device=targets.device)
    offsets = targets.new_tensor(_OFFSETS) * NEIGHBOUR_REACH
    levels = []
    for anchors, (ny, nx) in zip(anchors_grid, grid_shapes):
        gain = targets.new_tensor((nx, ny, nx, ny))
        box = targets[:, 2:6] * gain  # xywh in grid units of this level
        ratio = box[None, :, 2:4] / anchors[:, None]  # (na, nt, 2)
        fits = torch.max(ratio, 1 / ratio).amax(2) < anchor_t  # (na, nt)
        matched |= fits.any(0)
        anchor, target = fits.nonzero(as_tuple=True)  # row-major: anchor-major
        levels.append(_level_positives(targets[target], box[target], anchor, anchors,
                                       (ny, nx), gain, offsets))
    return Assignment(tuple(levels), matched)


def _level_positives(rows: Tensor, box: Tensor, anchor: Tensor, anchors: Tensor,
                     grid: tuple[int, int], gain: Tensor, offsets: Tensor) -> LevelAssignment:
    """Centre cell and neighbour cells for the matched (target, anchor) pairs of one level.

    `grid` is (ny, nx) and `gain` the same as a tensor (nx, ny, nx, ny); `offsets` (5, 2) the
    cell offsets of centre, left, up, right, down.
    """
    gxy, gwh = box[:, :2], box[:, 2:]
    gxi = gain[:2] - gxy  # distance to the right and bottom borders
    g = NEIGHBOUR_REACH
    # The "> 1" keeps the neighbour inside the grid: there must be a cell on that side.
    left, up = ((gxy % 1 < g) & (gxy > 1)).T
    right, down = ((gxi % 1 < g) & (gxi > 1)).T
    use = torch.stack((torch.ones_like(left), left, up, right, down))  # (5, n)
    group, pair = use.nonzero(as_tuple=True)  # group-major: all centres first
    gxy = gxy[pair]
    gij = (gxy - offsets[group]).long()
    ny, nx = grid
    gi, gj = gij[:, 0].clamp_(0, nx - 1), gij[:, 1].clamp_(0, ny - 1)
    # The in-cell target is taken against the clamped cell, as the real code does.
    xy = gxy - gij
    anchor = anchor[pair]
    rows = rows[pair]
    return LevelAssignment(
        image=rows[:, 0].long(), anchor=anchor, gj=gj, gi=gi,
        box=torch.cat((xy, gwh[pair]), 1), cls=rows[:, 1].long(), anchor_wh=anchors[anchor],
        na=anchors.shape[0])


def empty_level(na: int, device: torch.device, dtype: torch.dtype) -> LevelAssignment:
    """A level without positives (e.g. a batch without targets)."""
    index = torch.zeros(0, dtype=torch.long, device=device)
    return LevelAssignment(index, index, index, index, torch.zeros(0, 4, dtype=dtype,
                           device=device), index, torch.zeros(0, 2, dtype=dtype, device=device),
                           na)
