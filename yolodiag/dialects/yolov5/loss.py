"""YOLOv5 v7.0's training loss and target assignment, written from the mathematics.

`assign` decides which (image, anchor, cell) of each level answers for each ground-truth box and
reports how many positives that gives (per level, per anchor) and which boxes no anchor can
take; `compute_loss` turns the raw per-level maps of a Detect head into YOLOv5's
(box, objectness, class) loss. Both must agree with the real YOLOv5 to float precision (the
tests compare with numbers recorded from it), so the order of positives and every epsilon are
YOLOv5's. This module never trains, never changes the model or its inputs, never moves tensors
to a device of its own choosing: everything follows the raw maps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from yolodiag.build.builder import BuiltModel
from yolodiag.dialects.yolov5.heads import Detect, class_prior_logit, objectness_prior_logit

# hyp.scratch-low.yaml of YOLOv5 v7.0, loss entries only, before train.py's scaling.
HYP: dict[str, float] = {
    "box": 0.05,  # box (CIoU) gain
    "cls": 0.5,  # class gain
    "cls_pw": 1.0,  # class BCE positive weight
    "obj": 1.0,  # objectness gain
    "obj_pw": 1.0,  # objectness BCE positive weight
    "anchor_t": 4.0,  # largest target/anchor side ratio that still matches
    "fl_gamma": 0.0,  # focal loss gamma (0: plain BCE)
    "label_smoothing": 0.0,
}

NEIGHBOUR_REACH = 0.5  # YOLOv5's g: a centre within half a cell of an edge also uses that neighbour
# Subtracted from the centre before truncation: centre, left, up, right, down (YOLOv5's order).
_OFFSETS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))
# YOLOv5's objectness weight per level: small-stride levels have many cells and few positives.
_BALANCE = {3: (4.0, 1.0, 0.4)}
_BALANCE_OTHER = (4.0, 1.0, 0.25, 0.06, 0.02)
CIOU_EPS = 1e-7


def train_hyp(hyp: Mapping[str, float], nc: int, imgsz: int, nl: int) -> dict[str, float]:
    """The loss gains train.py actually uses: hyp scaled to the class count, image size and levels.

    YOLOv5's hyp files are tuned for 80 classes, 640 pixels and 3 levels; train.py rescales
    box by 3/nl, cls by nc/80 * 3/nl and obj by (imgsz/640)^2 * 3/nl before building the loss.
    The numbers recorded in ../golden passed hyp unscaled, so `compute_loss` does not scale.
    """
    layers = 3 / nl
    return {**hyp, "box": hyp["box"] * layers, "cls": hyp["cls"] * nc / 80 * layers,
            "obj": hyp["obj"] * (imgsz / 640) ** 2 * layers}


@dataclass(frozen=True)
class LevelAssignment:
    """The positives of one level, n rows each, in YOLOv5's order.

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
    """YOLOv5 v7.0's build_targets: positives per level for targets (n, 6).

    `targets` rows are (image, class, x, y, w, h), xywh normalised to [0, 1];
    `anchors_grid` (nl, na, 2) anchor sizes in grid units; `grid_shapes` (ny, nx) per level.
    A box matches an anchor when neither side ratio (box/anchor or anchor/box) reaches
    `anchor_t`; each match takes its centre cell plus the up-to-two neighbours whose edge the
    centre is within half a cell of (never past the border cell). Rows are ordered centre
    first, then left, up, right, down, and inside each group anchor-major, target order:
    objectness targets are written by index, the last write winning, so the order is part of
    the loss.
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
    # The in-cell target is taken against the clamped cell, as YOLOv5 does.
    xy = gxy - gij
    anchor = anchor[pair]
    rows = rows[pair]
    return LevelAssignment(
        image=rows[:, 0].long(), anchor=anchor, gj=gj, gi=gi,
        box=torch.cat((xy, gwh[pair]), 1), cls=rows[:, 1].long(), anchor_wh=anchors[anchor],
        na=anchors.shape[0])


def ciou(box1: Tensor, box2: Tensor, eps: float = CIOU_EPS) -> Tensor:
    """Complete IoU (Zheng et al. 2020) of paired boxes (n, 4) xywh -> (n,).

    iou - (rho^2 / c^2 + alpha * v): rho the centre distance, c the diagonal of the smallest
    enclosing box, v = 4/pi^2 (atan(w2/h2) - atan(w1/h1))^2 the aspect mismatch and
    alpha = v / (v - iou + 1 + eps) a weight that carries no gradient. eps is added to the
    union and c^2 so that degenerate boxes stay finite.

    The float operations are YOLOv5's, in its order (corners from half sides, the centre
    distance from corner sums): one-batch training amplifies a last-bit difference about
    tenfold per step, so only the same rounding gives the same run.
    """
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    hw1, hh1, hw2, hh2 = w1 / 2, h1 / 2, w2 / 2, h2 / 2
    b1x1, b1x2, b1y1, b1y2 = x1 - hw1, x1 + hw1, y1 - hh1, y1 + hh1
    b2x1, b2x2, b2y1, b2y2 = x2 - hw2, x2 + hw2, y2 - hh2, y2 + hh2
    inter = ((torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(0)
             * (torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)).clamp(0))
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = ((b2x1 + b2x2 - b1x1 - b1x2) ** 2 + (b2y1 + b2y2 - b1y1 - b1y2) ** 2) / 4
    v = (4 / math.pi ** 2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():  # alpha only weighs v (the paper's choice)
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def bce(logits: Tensor, target: Tensor, pos_weight: float | Tensor, gamma: float = 0.0
        ) -> Tensor:
    """Mean BCE-with-logits; with gamma > 0, YOLOv5's focal form (alpha 0.25).

    `pos_weight` multiplies the loss of positive targets (a float, or a (1,) tensor).

    Focal: each element is weighted by (y alpha + (1-y)(1-alpha)) (1 - p_t)^gamma, p_t the
    predicted probability of the target, so easy, confident elements count less.
    """
    weight = (pos_weight if isinstance(pos_weight, Tensor)
              else torch.tensor([pos_weight], device=logits.device))
    if gamma <= 0:
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
    loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight,
                                              reduction="none")
    p = logits.sigmoid()
    p_t = target * p + (1 - target) * (1 - p)
    alpha = 0.25
    alpha_factor = target * alpha + (1 - target) * (1 - alpha)
    return (loss * alpha_factor * (1.0 - p_t) ** gamma).mean()


def objectness_balance(nl: int) -> tuple[float, ...]:
    """YOLOv5's per-level objectness weights; it has none beyond five levels."""
    balance = _BALANCE.get(nl, _BALANCE_OTHER)
    if nl > len(balance):
        raise ValueError(f"YOLOv5's loss weighs at most {len(balance)} levels, got {nl}")
    return balance[:nl]


def compute_loss(source: BuiltModel | Detect | Tensor, raw_maps: Sequence[Tensor],
                 targets: Tensor, hyp: Mapping[str, float] | None = None
                 ) -> tuple[Tensor, Tensor]:
    """YOLOv5 v7.0's ComputeLoss on raw maps (batch, na, ny, nx, 5 + nc), one per level.

    `source` gives the anchors in grid units: a BuiltModel, its Detect head, or the (nl, na, 2)
    tensor itself. `targets` (n, 6) rows (image, class, x, y, w, h) normalised. `hyp` entries
    override HYP and are used as given (see `train_hyp` for train.py's scaling).
    Returns (loss (1,) = (box + obj + cls) * batch, detached (3,) [box, obj, cls]).
    """
    lbox, lobj, lcls = loss_terms(source, raw_maps, targets, hyp)
    return (lbox + lobj + lcls) * raw_maps[0].shape[0], torch.cat((lbox, lobj, lcls)).detach()


def loss_terms(source: BuiltModel | Detect | Tensor, raw_maps: Sequence[Tensor],
               targets: Tensor, hyp: Mapping[str, float] | None = None
               ) -> tuple[Tensor, Tensor, Tensor]:
    """The three terms of `compute_loss` before the batch factor, each (1,) and differentiable:
    (box, objectness, class). `gradflow` backpropagates them one at a time."""
    hyp = {**HYP, **(hyp or {})}
    p0 = raw_maps[0]
    anchors = _anchors(source).to(device=p0.device, dtype=targets.dtype)
    nc = p0.shape[-1] - 5
    _check_shapes(raw_maps, anchors, nc, source)
    balance = objectness_balance(len(raw_maps))
    assignment = assign(targets.to(p0.device), anchors, [p.shape[2:4] for p in raw_maps],
                        hyp["anchor_t"])
    eps = hyp["label_smoothing"]
    cp, cn = 1.0 - 0.5 * eps, 0.5 * eps  # smoothed positive and negative class targets
    gamma = hyp["fl_gamma"]
    # float32 like YOLOv5's, also under half-precision maps
    cls_pw, obj_pw = (torch.tensor([hyp[k]], device=p0.device) for k in ("cls_pw", "obj_pw"))
    lbox, lobj, lcls = (torch.zeros(1, device=p0.device) for _ in range(3))
    for p, level, weight in zip(raw_maps, assignment.levels, balance):
        tobj = torch.zeros(p.shape[:4], dtype=p.dtype, device=p.device)
        n = level.image.shape[0]
        if n:
            at = (level.image, level.anchor, level.gj, level.gi)
            pxy, pwh, _, pcls = p[at].split((2, 2, 1, nc), 1)
            # Offsets in [-0.5, 1.5] and sizes in (0, 4) anchors: the head's decode, per cell.
            pbox = torch.cat((pxy.sigmoid() * 2 - 0.5, (pwh.sigmoid() * 2) ** 2 * level.anchor_wh),
                             1)
            iou = ciou(pbox, level.box)
            lbox += (1.0 - iou).mean()
            # Objectness learns the box quality (gr = 1), never below zero.
            tobj[at] = iou.detach().clamp(0).type(tobj.dtype)
            if nc > 1:  # one class: objectness alone says it
                t = torch.full_like(pcls, cn)
                t[torch.arange(n, device=p.device), level.cls] = cp
                lcls += bce(pcls, t, cls_pw, gamma)
        lobj += bce(p[..., 4], tobj, obj_pw, gamma) * weight
    lbox *= hyp["box"]
    lobj *= hyp["obj"]
    lcls *= hyp["cls"]
    return lbox, lobj, lcls


def _anchors(source: BuiltModel | Detect | Tensor) -> Tensor:
    if isinstance(source, Tensor):
        return source
    if isinstance(source, Detect):
        return source.anchors
    if isinstance(source, BuiltModel):
        if source.anchors is None:
            raise ValueError("the model's strides and anchors are unknown (its build failed)")
        return source.anchors
    raise TypeError(f"need a BuiltModel, a Detect head or anchors, got {type(source).__name__}")


def _check_shapes(raw_maps: Sequence[Tensor], anchors: Tensor, nc: int, source) -> None:
    nl, na = anchors.shape[:2]
    if len(raw_maps) != nl:
        raise ValueError(f"{len(raw_maps)} raw maps for {nl} anchor levels")
    expected_nc = source.nc if isinstance(source, (BuiltModel, Detect)) else nc
    for i, p in enumerate(raw_maps):
        if p.dim() != 5 or p.shape[1] != na or p.shape[-1] != 5 + expected_nc:
            raise ValueError(f"raw map {i} has shape {tuple(p.shape)}; expected "
                             f"(batch, {na}, ny, nx, {5 + expected_nc})")


def prior_maps(source: BuiltModel, grid_shapes: Sequence[tuple[int, int]], batch: int
               ) -> list[Tensor]:
    """Raw maps (batch, na, ny, nx, 5 + nc) holding only YOLOv5's Detect bias priors, as a model
    whose weights were all zero would predict: box logits 0, objectness log(8 / (640 / s)^2)
    (about 8 objects per 640x640 image per level), classes log(0.6 / (nc - 0.99999))."""
    if source.stride is None:
        raise ValueError("the model's strides are unknown (its build failed)")
    na, nc = source.anchors.shape[1], source.nc
    maps = []
    for (ny, nx), stride in zip(grid_shapes, source.stride):
        p = torch.zeros(batch, na, ny, nx, 5 + nc)
        p[..., 4] = objectness_prior_logit(stride)
        p[..., 5:] = class_prior_logit(nc)
        maps.append(p)
    return maps


def prior_loss(source: BuiltModel, grid_shapes: Sequence[tuple[int, int]], targets: Tensor,
               batch: int, hyp: Mapping[str, float] | None = None) -> tuple[Tensor, Tensor]:
    """The loss YOLOv5's bias initialisation implies before any training: `compute_loss` of
    `prior_maps`. A freshly built model starts near it (its random weights add a little
    spread); a step-0 loss far from it means the priors are missing or overwritten (YD706)."""
    return compute_loss(source, prior_maps(source, grid_shapes, batch), targets, hyp)
