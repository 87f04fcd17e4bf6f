"""Ultralytics 8.4.190's task-aligned assignment (utils/tal.py, TaskAlignedAssigner), written
from its mathematics: which anchor points answer for which ground-truth box, and with what soft
class target.

For each box, the candidates are the anchor points strictly inside it (by more than eps), after
sides shorter than `stride_val` (the head's second stride) are widened to it about the centre.
Each candidate's alignment is score^alpha * CIoU^beta (its predicted probability of the box's
class, CIoU of its predicted box with the box clamped at 0); the box keeps its top-k candidates
by alignment. A point claimed by several boxes keeps the one its predicted box overlaps most
(with `topk2` below `topk`, each box then keeps only its topk2 best). Target scores are the
one-hot class times the alignment normalised per box: by the box's best alignment, scaled to
its best overlap. Every tie is broken by the same torch operations as 8.4.190's, so the
foreground is the same point for point. Runs under no_grad: the targets carry no gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from yolodiag.dialects.ultralytics.boxes import corner_ciou


class Assigned(NamedTuple):
    labels: Tensor  # (b, a) class of the assigned box (0 where background)
    boxes: Tensor  # (b, a, 4) the assigned box, xyxy pixels
    scores: Tensor  # (b, a, nc) soft class targets
    foreground: Tensor  # (b, a) bool
    box_index: Tensor  # (b, a) index of the assigned box among the image's


@torch.no_grad()
def assign(pd_scores: Tensor, pd_bboxes: Tensor, anc_points: Tensor, gt_labels: Tensor,
           gt_bboxes: Tensor, mask_gt: Tensor, *, nc: int, stride_val: float, topk: int = 10,
           topk2: int | None = None, alpha: float = 0.5, beta: float = 6.0,
           eps: float = 1e-9) -> Assigned:
    """pd_scores (b, a, nc) probabilities, pd_bboxes (b, a, 4) and gt_bboxes (b, n, 4) xyxy
    pixels, anc_points (a, 2) pixels, gt_labels (b, n, 1), mask_gt (b, n, 1) the real boxes of
    each image's padded list."""
    batch, boxes = gt_bboxes.shape[:2]
    if boxes == 0:
        return Assigned(torch.full_like(pd_scores[..., 0], nc), torch.zeros_like(pd_bboxes),
                        torch.zeros_like(pd_scores),
                        torch.zeros_like(pd_scores[..., 0], dtype=torch.bool),
                        torch.zeros_like(pd_scores[..., 0]))
    inside = _inside(anc_points, gt_bboxes, mask_gt, stride_val, eps)
    alignment, overlaps = _alignment(pd_scores, pd_bboxes, gt_labels, gt_bboxes,
                                     inside & mask_gt.bool(), alpha, beta)
    chosen = _top_candidates(alignment, mask_gt.expand(-1, -1, topk).bool(), topk)
    positive = chosen.mul_(inside).mul_(mask_gt.bool())
    box_index, foreground, positive = _one_box_per_point(positive, overlaps, alignment, topk,
                                                         topk2 or topk)
    labels, assigned_boxes, scores = _targets(gt_labels, gt_bboxes, box_index, foreground, nc)
    alignment = alignment * positive
    best_alignment = alignment.amax(dim=-1, keepdim=True)
    overlaps = overlaps * positive
    best_overlap = overlaps.amax(dim=-1, keepdim=True)
    normalised = (alignment * best_overlap / (best_alignment + eps)).amax(-2).unsqueeze(-1)
    return Assigned(labels, assigned_boxes, scores * normalised, foreground.bool(), box_index)


def _inside(points: Tensor, gt_bboxes: Tensor, mask_gt: Tensor, stride_val: float,
            eps: float) -> Tensor:
    """(b, n, a): the points strictly inside each box, its short sides widened to stride_val."""
    centre = (gt_bboxes[..., :2] + gt_bboxes[..., 2:]) / 2
    size = gt_bboxes[..., 2:] - gt_bboxes[..., :2]
    size = torch.where((size < stride_val) & mask_gt.bool(),
                       torch.tensor(stride_val, dtype=size.dtype, device=size.device), size)
    half = size / 2
    left_top, right_bottom = (centre - half).unsqueeze(2), (centre + half).unsqueeze(2)
    inside = points[:, 0] - left_top[..., 0] > eps
    inside &= points[:, 1] - left_top[..., 1] > eps
    inside &= right_bottom[..., 0] - points[:, 0] > eps
    inside &= right_bottom[..., 1] - points[:, 1] > eps
    return inside


def _alignment(pd_scores: Tensor, pd_bboxes: Tensor, gt_labels: Tensor, gt_bboxes: Tensor,
               candidates: Tensor, alpha: float, beta: float) -> tuple[Tensor, Tensor]:
    """(alignment, CIoU) per (image, box, point), zero outside the candidates."""
    shape = candidates.shape
    image, box, point = candidates.nonzero(as_tuple=True)
    scores = pd_scores[image, point, gt_labels[image, box, 0].long()]
    overlap = corner_ciou(gt_bboxes[image, box], pd_bboxes[image, point]).clamp_(0)
    overlaps = torch.zeros(shape, dtype=pd_bboxes.dtype, device=pd_bboxes.device)
    alignment = torch.zeros(shape, dtype=scores.dtype, device=pd_scores.device)
    overlaps[image, box, point] = overlap
    alignment[image, box, point] = scores.pow(alpha) * overlap.pow(beta)
    return alignment, overlaps


def _top_candidates(alignment: Tensor, real_boxes: Tensor, topk: int) -> Tensor:
    """int8 (b, n, a): 1 at each real box's top-k points by alignment. A padding row's picks
    all land on point 0, whose count then exceeds 1 and is cleared."""
    picked = torch.topk(alignment, topk, dim=-1, largest=True).indices
    picked.masked_fill_(~real_boxes, 0)
    counts = torch.zeros(alignment.shape, dtype=torch.int8, device=picked.device)
    counts.scatter_add_(-1, picked, torch.ones_like(picked, dtype=torch.int8))
    return counts.masked_fill_(counts > 1, 0)


def _one_box_per_point(positive: Tensor, overlaps: Tensor, alignment: Tensor, topk: int,
                       topk2: int) -> tuple[Tensor, Tensor, Tensor]:
    """(box index per point, foreground per point, positive mask) after a point claimed by
    several boxes keeps the one it overlaps most."""
    claims = positive.sum(-2)
    contested = (claims.unsqueeze(1) > 1).expand(-1, positive.shape[1], -1)
    best = torch.zeros(positive.shape, dtype=positive.dtype, device=positive.device)
    best.scatter_(1, overlaps.max(1).indices.unsqueeze(1), 1)
    positive = torch.where(contested, best, positive)
    if topk2 != topk:
        kept = torch.topk(alignment * positive, topk2, dim=-1, largest=True).indices
        keep = torch.zeros(positive.shape, dtype=positive.dtype, device=positive.device)
        keep.scatter_(-1, kept, 1)
        positive = positive * keep
    foreground, box_index = positive.max(-2)
    return box_index, foreground, positive


def _targets(gt_labels: Tensor, gt_bboxes: Tensor, box_index: Tensor, foreground: Tensor,
             nc: int) -> tuple[Tensor, Tensor, Tensor]:
    batch, boxes = gt_bboxes.shape[:2]
    flat_index = box_index + torch.arange(batch, device=gt_labels.device)[:, None] * boxes
    labels = gt_labels.long().flatten()[flat_index].clamp_(0)
    assigned = gt_bboxes.view(-1, gt_bboxes.shape[-1])[flat_index]
    scores = torch.zeros((*labels.shape, nc), dtype=torch.int8, device=labels.device)
    scores.scatter_(2, labels.unsqueeze(-1), 1)
    return labels, assigned, scores * (foreground[:, :, None] > 0)
