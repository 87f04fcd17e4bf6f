"""YOLOv7's training losses, written from the mathematics: ComputeLoss (`candidate_loss`: every
anchor candidate trains) and ComputeLossOTA (`ota_loss`: SimOTA chooses among them, `ota.py`).

train.py trains with ComputeLossOTA whenever the hyp's `loss_ota` is 1 (all of YOLOv7's hyp
files) and keeps ComputeLoss for the validation loss, so the dialect's `compute_loss` and
`loss_terms` (what gradflow and overfit train and measure) follow `loss_ota` the same way. Both
losses are YOLOv5 v7.0's terms (`dialects/common/loss_math.py`) with YOLOv7's CIoU rounding and
its objectness target (1 - gr) + gr * IoU, gr = 1.0 as train.py sets it. YOLOv7 reports four
items (box, obj, cls, total); `candidate_loss` and `ota_loss` return them, `compute_loss` the
engine's three. This module never trains and never moves tensors to a device of its own
choosing: everything follows the raw maps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from yolodiag.build.builder import BuiltModel
from yolodiag.dialects.common.loss_math import positive_terms, train_hyp
from yolodiag.dialects.common.matching import assign
from yolodiag.dialects.common.training import anchor_positives as batch_positives
from yolodiag.dialects.common.training import nesterov_sgd as optimizer
from yolodiag.dialects.yolov7.heads import Detect, class_prior_logit, objectness_prior_logit
from yolodiag.dialects.yolov7.ota import ota_levels

# What the engine reads as `dialect.loss` (gradflow, overfit, the assignment analysis).
__all__ = ["GR", "HYP", "MUST_FALL", "TERMS", "HeadGeometry", "assign", "batch_positives",
           "candidate_loss", "compute_loss", "loss_terms", "optimizer", "ota_loss", "prior_loss",
           "prior_maps", "train_hyp"]

# data/hyp.scratch.p5.yaml (train.py's default --hyp), loss entries only, before train.py's
# scaling; label_smoothing is train.py's --label-smoothing default.
# The loss terms, in the order compute_loss adds them and logs them.
TERMS = ("box", "obj", "cls")
# The terms that must fall while one batch is memorised (YD702). Not objectness: its target is
# the IoU of the predicted box, so it rises while the boxes improve.
MUST_FALL = ("box", "cls")

HYP: dict[str, float] = {
    "box": 0.05,  # box (CIoU) gain
    "cls": 0.3,  # class gain
    "cls_pw": 1.0,  # class BCE positive weight
    "obj": 0.7,  # objectness gain
    "obj_pw": 1.0,  # objectness BCE positive weight
    "anchor_t": 4.0,  # largest target/anchor side ratio that still matches
    "fl_gamma": 0.0,  # focal loss gamma (0: plain BCE)
    "label_smoothing": 0.0,
    "loss_ota": 1,  # 1: train with ComputeLossOTA, else ComputeLoss
}
GR = 1.0  # train.py's model.gr: objectness learns the IoU itself

_AUX = ("{maps} raw maps for {nl} anchor levels: an IAuxDetect model's lead and auxiliary maps. "
        "YOLOv7 trains these with train_aux.py (ComputeLossAuxOTA), which yolodiag does not "
        "implement; its train.py, whose losses read one map per anchor level, fails on them "
        "with an IndexError")


@dataclass(frozen=True)
class HeadGeometry:
    """What the losses read from a head: anchors (nl, na, 2) in grid units, strides (nl,) in
    pixels per cell, and the class count (None: taken from the maps)."""

    anchors: Tensor
    strides: Tensor
    nc: int | None = None


def head_geometry(source: BuiltModel | Detect | HeadGeometry) -> HeadGeometry:
    if isinstance(source, HeadGeometry):
        return source
    if isinstance(source, Detect):
        return HeadGeometry(source.anchors, source.stride, source.nc)
    if isinstance(source, BuiltModel):
        if source.anchors is None or source.stride is None:
            raise ValueError("the model's strides and anchors are unknown (its build failed)")
        # Its head's nc, not the YAML's: a head may have been given another (YD109).
        return HeadGeometry(source.anchors, torch.tensor(source.stride),
                            getattr(source.model.head, "nc", None))
    raise TypeError(f"need a BuiltModel, a YOLOv7 head or a HeadGeometry, got "
                    f"{type(source).__name__}")


def candidate_loss(source: BuiltModel | Detect | HeadGeometry, raw_maps: Sequence[Tensor],
                   targets: Tensor, hyp: Mapping[str, float] | None = None
                   ) -> tuple[Tensor, Tensor]:
    """YOLOv7's ComputeLoss on raw maps (batch, na, ny, nx, 5 + nc), one per anchor level.

    `targets` (n, 6) rows (image, class, x, y, w, h) normalised; `hyp` entries override HYP and
    are used as given (see `train_hyp` for train.py's scaling). Returns YOLOv7's (loss (1,) =
    total * batch, detached (4,) [box, obj, cls, total])."""
    return _reported(_terms(source, raw_maps, targets, hyp, ota=False), raw_maps)


def ota_loss(source: BuiltModel | Detect | HeadGeometry, raw_maps: Sequence[Tensor],
             targets: Tensor, hyp: Mapping[str, float] | None = None,
             img_size: int | None = None) -> tuple[Tensor, Tensor]:
    """YOLOv7's ComputeLossOTA, as `candidate_loss` returns it. `img_size` is the side in pixels
    of the (square) images `targets` are normalised to; by default the height of level 0's map
    times its stride (exact when the image side is a multiple of the largest stride, as
    train.py makes it)."""
    return _reported(_terms(source, raw_maps, targets, hyp, ota=True, img_size=img_size),
                     raw_maps)


def compute_loss(source: BuiltModel | Detect | HeadGeometry, raw_maps: Sequence[Tensor],
                 targets: Tensor, hyp: Mapping[str, float] | None = None
                 ) -> tuple[Tensor, Tensor]:
    """The loss train.py trains with (ComputeLossOTA unless hyp's loss_ota is not 1) in the
    engine's form: (loss (1,) = (box + obj + cls) * batch, detached (3,) [box, obj, cls])."""
    lbox, lobj, lcls = loss_terms(source, raw_maps, targets, hyp)
    return (lbox + lobj + lcls) * raw_maps[0].shape[0], torch.cat((lbox, lobj, lcls)).detach()


def loss_terms(source: BuiltModel | Detect | HeadGeometry, raw_maps: Sequence[Tensor],
               targets: Tensor, hyp: Mapping[str, float] | None = None
               ) -> tuple[Tensor, Tensor, Tensor]:
    """The three terms of `compute_loss` before the batch factor, each (1,) and differentiable:
    (box, objectness, class). `gradflow` backpropagates them one at a time."""
    merged = {**HYP, **(hyp or {})}
    return _terms(source, raw_maps, targets, merged, ota=merged["loss_ota"] == 1)


def _reported(terms: tuple[Tensor, Tensor, Tensor], raw_maps: Sequence[Tensor]
              ) -> tuple[Tensor, Tensor]:
    total = terms[0] + terms[1] + terms[2]
    return total * raw_maps[0].shape[0], torch.cat((*terms, total)).detach()


def _terms(source, raw_maps: Sequence[Tensor], targets: Tensor, hyp, *, ota: bool,
           img_size: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    hyp = {**HYP, **(hyp or {})}
    geometry = head_geometry(source)
    p0 = raw_maps[0]
    anchors = geometry.anchors.to(device=p0.device, dtype=targets.dtype)
    _check_shapes(raw_maps, anchors, geometry.nc)
    targets = targets.to(p0.device)
    positives = assign(targets, anchors, [p.shape[2:4] for p in raw_maps], hyp["anchor_t"])
    levels = positives.levels
    if ota:
        strides = geometry.strides.to(device=p0.device, dtype=torch.float32)
        side = img_size if img_size is not None else round(p0.shape[2] * float(strides[0]))
        levels = ota_levels(positives, raw_maps, targets, strides, side)
    return positive_terms(raw_maps, levels, hyp, gr=GR, corner_sides=True)


def _check_shapes(raw_maps: Sequence[Tensor], anchors: Tensor, nc: int | None) -> None:
    nl, na = anchors.shape[:2]
    if len(raw_maps) == 2 * nl:
        raise ValueError(_AUX.format(maps=len(raw_maps), nl=nl))
    if len(raw_maps) != nl:
        raise ValueError(f"{len(raw_maps)} raw maps for {nl} anchor levels")
    for i, p in enumerate(raw_maps):
        no = p.shape[-1] if nc is None else 5 + nc
        if p.dim() != 5 or p.shape[1] != na or p.shape[-1] != no:
            raise ValueError(f"raw map {i} has shape {tuple(p.shape)}; expected "
                             f"(batch, {na}, ny, nx, {no})")


def prior_maps(source: BuiltModel, grid_shapes: Sequence[tuple[int, int]], batch: int
               ) -> list[Tensor]:
    """Raw maps (batch, na, ny, nx, 5 + nc) holding only YOLOv7's head bias priors, as a model
    whose weights were all zero would predict: box logits 0, objectness log(8 / (640 / s)^2)
    (about 8 objects per 640x640 image per level), classes log(0.6 / (nc - 0.99))."""
    if source.stride is None:
        raise ValueError("the model's strides are unknown (its build failed)")
    na, nc = source.anchors.shape[1], getattr(source.model.head, "nc", None) or source.nc
    maps = []
    for (ny, nx), stride in zip(grid_shapes, torch.tensor(source.stride)):
        p = torch.zeros(batch, na, ny, nx, 5 + nc)
        p[..., 4] = objectness_prior_logit(stride)
        p[..., 5:] = class_prior_logit(nc)
        maps.append(p)
    return maps


def prior_loss(source: BuiltModel, grid_shapes: Sequence[tuple[int, int]], targets: Tensor,
               batch: int, hyp: Mapping[str, float] | None = None) -> tuple[Tensor, Tensor]:
    """The loss YOLOv7's bias initialisation implies before any training: `compute_loss` of
    `prior_maps` (image side from the finest grid). A freshly built model starts near it; a
    step-0 loss far from it means the priors are missing or overwritten (YD706)."""
    return compute_loss(source, prior_maps(source, grid_shapes, batch), targets, hyp)

