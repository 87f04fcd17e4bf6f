"""YOLOv5 v7.0's training loss and target assignment, written from the mathematics.

`assign` (the candidate matcher YOLOv7 shares, `dialects/common/matching.py`) decides which
(image, anchor, cell) of each level answers for each ground-truth box and reports how many
positives that gives (per level, per anchor) and which boxes no anchor can take; `compute_loss`
turns the raw per-level maps of a Detect head into YOLOv5's (box, objectness, class) loss
(`dialects/common/loss_math.py`). Both must agree with the real YOLOv5 to float precision (the
tests compare with numbers recorded from it), so the order of positives and every epsilon are
YOLOv5's. This module never trains, never changes the model or its inputs, never moves tensors
to a device of its own choosing: everything follows the raw maps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from yolodiag.build.builder import BuiltModel
from yolodiag.dialects.common.loss_math import (
    bce,
    ciou,
    objectness_balance,
    positive_terms,
    train_hyp,
)
from yolodiag.dialects.common.matching import Assignment, LevelAssignment, assign
from yolodiag.dialects.common.training import anchor_positives as batch_positives
from yolodiag.dialects.common.training import nesterov_sgd as optimizer
from yolodiag.dialects.yolov5.heads import Detect, class_prior_logit, objectness_prior_logit

# What the engine reads as `dialect.loss` (gradflow, overfit, the assignment analysis), and the
# shared pieces the tests reach through this module.
__all__ = ["HYP", "MUST_FALL", "TERMS", "Assignment", "LevelAssignment", "assign",
           "batch_positives", "bce", "ciou", "compute_loss", "loss_terms", "objectness_balance",
           "optimizer", "prior_loss", "prior_maps", "train_hyp"]

# hyp.scratch-low.yaml of YOLOv5 v7.0, loss entries only, before train.py's scaling.
# The loss terms, in the order compute_loss adds them and logs them.
TERMS = ("box", "obj", "cls")
# The terms that must fall while one batch is memorised (YD702). Not objectness: its target is
# the IoU of the predicted box, so it rises while the boxes improve.
MUST_FALL = ("box", "cls")

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
    assignment = assign(targets.to(p0.device), anchors, [p.shape[2:4] for p in raw_maps],
                        hyp["anchor_t"])
    # Objectness learns the box quality (gr = 1).
    return positive_terms(raw_maps, assignment.levels, hyp)


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
    expected_nc = head_nc(source) if isinstance(source, (BuiltModel, Detect)) else nc
    for i, p in enumerate(raw_maps):
        if p.dim() != 5 or p.shape[1] != na or p.shape[-1] != 5 + expected_nc:
            raise ValueError(f"raw map {i} has shape {tuple(p.shape)}; expected "
                             f"(batch, {na}, ny, nx, {5 + expected_nc})")


def head_nc(source: BuiltModel | Detect) -> int:
    """The classes the head predicts: a BuiltModel's nc is the YAML's, and its head may have
    been given another (a literal class count, YD109)."""
    head = source.model.head if isinstance(source, BuiltModel) else source
    return getattr(head, "nc", None) or source.nc


def prior_maps(source: BuiltModel, grid_shapes: Sequence[tuple[int, int]], batch: int
               ) -> list[Tensor]:
    """Raw maps (batch, na, ny, nx, 5 + nc) holding only YOLOv5's Detect bias priors, as a model
    whose weights were all zero would predict: box logits 0, objectness log(8 / (640 / s)^2)
    (about 8 objects per 640x640 image per level), classes log(0.6 / (nc - 0.99999))."""
    if source.stride is None:
        raise ValueError("the model's strides are unknown (its build failed)")
    na, nc = source.anchors.shape[1], head_nc(source)
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
