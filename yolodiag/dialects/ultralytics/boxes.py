"""Complete IoU of corner boxes as 8.4.190's bbox_iou(xywh=False, CIoU=True) rounds it: eps on
each height (not the width), in the union and in the enclosing diagonal; the aspect term from
those heights; alpha = v / (1 - iou + v + eps), without gradient."""

from __future__ import annotations

import math

import torch
from torch import Tensor

EPS = 1e-7


def corner_ciou(box1: Tensor, box2: Tensor, eps: float = EPS) -> Tensor:
    """(n, 4) and (n, 4) xyxy -> (n,)."""
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = box1.unbind(-1), box2.unbind(-1)
    w1, h1 = ax2 - ax1, ay2 - ay1 + eps
    w2, h2 = bx2 - bx1, by2 - by1 + eps
    inter = ((ax2.minimum(bx2) - ax1.maximum(bx1)).clamp(0)
             * (ay2.minimum(by2) - ay1.maximum(by1)).clamp(0))
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    enclosing_w = ax2.maximum(bx2) - ax1.minimum(bx1)
    enclosing_h = ay2.maximum(by2) - ay1.minimum(by1)
    diagonal = enclosing_w.pow(2) + enclosing_h.pow(2) + eps
    centres = ((bx1 + bx2 - ax1 - ax2).pow(2) + (by1 + by2 - ay1 - ay2).pow(2)) / 4
    v = (4 / math.pi ** 2) * ((w2 / h2).atan() - (w1 / h1).atan()).pow(2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return iou - (centres / diagonal + v * alpha)
