"""The loss mathematics YOLOv5 v7.0's ComputeLoss and YOLOv7's ComputeLoss / ComputeLossOTA share:
train.py's scaling of the gains, Complete IoU, BCE (focal when asked), the per-level objectness
balance, and the three terms (box, objectness, class) computed from a list of positives.

Which cells are positives is each loss's own business (`matching.assign`, YOLOv7's SimOTA); the
terms only read them. The float operations are the real code's, in its order: one-batch
training amplifies a last-bit difference about tenfold per step, so only the same rounding
gives the same run. Nothing here moves tensors to a device of its own choosing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from yolodiag.dialects.common.matching import LevelAssignment

# Objectness weight per level: small-stride levels have many cells and few positives.
_BALANCE = {3: (4.0, 1.0, 0.4)}
_BALANCE_OTHER = (4.0, 1.0, 0.25, 0.06, 0.02)
CIOU_EPS = 1e-7


def train_hyp(hyp: Mapping[str, float], nc: int, imgsz: int, nl: int) -> dict[str, float]:
    """The loss gains train.py actually uses: hyp scaled to the class count, image size and levels.

    The hyp files are tuned for 80 classes, 640 pixels and 3 levels; train.py (YOLOv5's and
    YOLOv7's alike) rescales box by 3/nl, cls by nc/80 * 3/nl and obj by (imgsz/640)^2 * 3/nl
    before building the loss. The losses themselves never scale.
    """
    layers = 3 / nl
    return {**hyp, "box": hyp["box"] * layers, "cls": hyp["cls"] * nc / 80 * layers,
            "obj": hyp["obj"] * (imgsz / 640) ** 2 * layers}


def ciou(box1: Tensor, box2: Tensor, eps: float = CIOU_EPS, *, corner_sides: bool = False
         ) -> Tensor:
    """Complete IoU (Zheng et al. 2020) of paired boxes (n, 4) xywh -> (n,).

    iou - (rho^2 / c^2 + alpha * v): rho the centre distance, c the diagonal of the smallest
    enclosing box, v = 4/pi^2 (atan(w2/h2) - atan(w1/h1))^2 the aspect mismatch and
    alpha = v / (v - iou + 1 + eps) a weight that carries no gradient. eps is added to the
    union and c^2 so that degenerate boxes stay finite.

    YOLOv5 v7.0 uses the given sides. `corner_sides` is YOLOv7's (and older YOLOv5's) rounding:
    the sides re-measured from the corners, eps added to each height, and once more to the
    heights inside the arctangents.
    """
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    hw1, hh1, hw2, hh2 = w1 / 2, h1 / 2, w2 / 2, h2 / 2
    b1x1, b1x2, b1y1, b1y2 = x1 - hw1, x1 + hw1, y1 - hh1, y1 + hh1
    b2x1, b2x2, b2y1, b2y2 = x2 - hw2, x2 + hw2, y2 - hh2, y2 + hh2
    inter = ((torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(0)
             * (torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)).clamp(0))
    if corner_sides:
        w1, h1 = b1x2 - b1x1, b1y2 - b1y1 + eps
        w2, h2 = b2x2 - b2x1, b2y2 - b2y1 + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = ((b2x1 + b2x2 - b1x1 - b1x2) ** 2 + (b2y1 + b2y2 - b1y1 - b1y2) ** 2) / 4
    if corner_sides:
        aspect = torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))
    else:
        aspect = torch.atan(w2 / h2) - torch.atan(w1 / h1)
    v = (4 / math.pi ** 2) * aspect ** 2
    with torch.no_grad():  # alpha only weighs v (the paper's choice)
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def bce(logits: Tensor, target: Tensor, pos_weight: float | Tensor, gamma: float = 0.0
        ) -> Tensor:
    """Mean BCE-with-logits; with gamma > 0, the focal form (alpha 0.25) both families use.

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
    """The per-level objectness weights; there are none beyond five levels."""
    balance = _BALANCE.get(nl, _BALANCE_OTHER)
    if nl > len(balance):
        raise ValueError(f"the loss weighs at most {len(balance)} levels, got {nl}")
    return balance[:nl]


def positive_terms(raw_maps: Sequence[Tensor], levels: Sequence[LevelAssignment],
                   hyp: Mapping[str, float], *, gr: float = 1.0, corner_sides: bool = False
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """(box, objectness, class), each (1,) and differentiable, from raw maps (batch, na, ny, nx,
    5 + nc) and the positives of each level.

    Box: mean 1 - CIoU of the decoded positives (offsets in [-0.5, 1.5] of the cell, sizes in
    (0, 4) anchors) against their targets. Objectness: BCE over every cell against 0, and at the
    positives against (1 - gr) + gr * CIoU (never below zero), weighted per level. Class: BCE of
    the positives against their one-hot (label-smoothed) class, only when nc > 1. Each term is
    multiplied by its gain in `hyp` (box, obj, cls; cls_pw, obj_pw, fl_gamma, label_smoothing).
    """
    p0 = raw_maps[0]
    nc = p0.shape[-1] - 5
    balance = objectness_balance(len(raw_maps))
    eps = hyp["label_smoothing"]
    cp, cn = 1.0 - 0.5 * eps, 0.5 * eps  # smoothed positive and negative class targets
    gamma = hyp["fl_gamma"]
    # float32 like the real code's, also under half-precision maps
    cls_pw, obj_pw = (torch.tensor([hyp[k]], device=p0.device) for k in ("cls_pw", "obj_pw"))
    lbox, lobj, lcls = (torch.zeros(1, device=p0.device) for _ in range(3))
    for p, level, weight in zip(raw_maps, levels, balance):
        tobj = torch.zeros(p.shape[:4], dtype=p.dtype, device=p.device)
        n = level.image.shape[0]
        if n:
            at = (level.image, level.anchor, level.gj, level.gi)
            pxy, pwh, _, pcls = p[at].split((2, 2, 1, nc), 1)
            pbox = torch.cat((pxy.sigmoid() * 2 - 0.5, (pwh.sigmoid() * 2) ** 2 * level.anchor_wh),
                             1)
            iou = ciou(pbox, level.box, corner_sides=corner_sides)
            lbox += (1.0 - iou).mean()
            quality = iou.detach().clamp(0).type(tobj.dtype)
            if gr != 1.0:  # with gr = 1 the target is the quality itself, to the last bit
                quality = (1.0 - gr) + gr * quality
            tobj[at] = quality
            if nc > 1:  # one class: objectness alone says it
                t = torch.full_like(pcls, cn)
                t[torch.arange(n, device=p.device), level.cls] = cp
                lcls += bce(pcls, t, cls_pw, gamma)
        lobj += bce(p[..., 4], tobj, obj_pw, gamma) * weight
    lbox *= hyp["box"]
    lobj *= hyp["obj"]
    lcls *= hyp["cls"]
    return lbox, lobj, lcls
