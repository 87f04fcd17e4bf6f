"""Ultralytics 8.4.190's detection loss (utils/loss.py: v8DetectionLoss, BboxLoss, DFLoss; E2ELoss
for heads with a one-to-one branch), written from its mathematics and checked against numbers
recorded from it (../shared/golden/ultralytics/numerics).

From the head's train output (per anchor point: 4 x reg_max box logits, nc class logits) and the
targets: the predicted boxes are the DFL expectations (softmax over the bins times 0..reg_max-1)
as distances from each point; the task-aligned assigner (`tal`) picks the foreground and its
soft class targets from the detached predictions. Then, each normalised by the sum of the
target scores (at least 1): class = BCE with logits over every point and class; box = (1 -
CIoU) of the foreground, weighted by each point's target score; DFL = the two-bin cross-entropy
around each target distance (clamped below reg_max - 1), same weights (with reg_max 1: L1 of the
distances over the image size). Gains box 7.5, cls 0.5, dfl 1.5 (cfg/default.yaml), and the
trainer does not scale them (no class, size or level factor as YOLOv5's train.py). The trainer
backpropagates the sum of the three times the batch size and logs the three unscaled.
A one-to-one head adds the same loss of its one-to-one branch (top-k 7, then 1 per point),
weighted 0.2 against 0.8 for the one-to-many branch at the start of training; the items logged
are the one-to-one branch's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from yolodiag.build.builder import BuiltModel
from yolodiag.dialects.ultralytics.boxes import corner_ciou
from yolodiag.dialects.ultralytics.decode import bbox2dist, dist2bbox, make_anchors
from yolodiag.dialects.ultralytics.heads import Detect
from yolodiag.dialects.ultralytics.tal import Assigned, assign
from yolodiag.dialects.ultralytics.trainer import (  # noqa: F401  (what the engine calls here)
    ema_decay,
    optimizer,
    prior_output,
)
from yolodiag.metrics import xywh2xyxy

__all__ = ["HYP", "MUST_FALL", "TERMS", "assign", "batch_positives", "compute_loss",
           "ema_decay", "loss_terms", "optimizer", "prior_loss", "train_hyp"]

HYP: dict[str, float] = {"box": 7.5, "cls": 0.5, "dfl": 1.5}  # cfg/default.yaml
TERMS = ("box", "cls", "dfl")  # as the trainer logs them: box_loss, cls_loss, dfl_loss
MUST_FALL = TERMS  # no objectness: every term should fall while one batch is memorised
TOPK, ONE2ONE_TOPK, ONE2ONE_TOPK2 = 10, 7, 1
ONE2MANY_WEIGHT = 0.8  # E2ELoss's o2m at the first update; o2o = 1 - o2m
ALPHA, BETA = 0.5, 6.0


def train_hyp(hyp: Mapping[str, float], nc: int, img: int, nl: int) -> dict[str, float]:
    """The gains the trainer uses: the hyp as given (Ultralytics scales none of them)."""
    return dict(hyp)


def compute_loss(source: BuiltModel | Detect, train_output: Any, targets: Tensor,
                 hyp: Mapping[str, float]) -> tuple[Tensor, Tensor]:
    """(what the trainer backpropagates: the sum of the gained terms times the batch size,
    the three unscaled items, detached)."""
    terms, items = _criterion(_head(source), train_output, targets, hyp)
    batch = _branch(train_output)["boxes"].shape[0]
    return (terms * batch).sum(), items


def loss_terms(source: BuiltModel | Detect, train_output: Any, targets: Tensor,
               hyp: Mapping[str, float]) -> tuple[Tensor, Tensor, Tensor]:
    """(box, cls, dfl) with the gains, not times the batch: their sum times the batch is
    compute_loss's total."""
    terms, _ = _criterion(_head(source), train_output, targets, hyp)
    return terms[0], terms[1], terms[2]


def _head(source: BuiltModel | Detect) -> Detect:
    return source.model.head if isinstance(source, BuiltModel) else source


def _branch(train_output: Any) -> dict:
    return train_output.get("one2many", train_output)


def _criterion(head: Detect, out: Any, targets: Tensor, hyp: Mapping[str, float]
               ) -> tuple[Tensor, Tensor]:
    if "one2one" not in out:
        return detection_loss(head, out, targets, hyp)
    many, _ = detection_loss(head, out["one2many"], targets, hyp)
    one, items = detection_loss(head, out["one2one"], targets, hyp, topk=ONE2ONE_TOPK,
                                topk2=ONE2ONE_TOPK2)
    return many * ONE2MANY_WEIGHT + one * (1 - ONE2MANY_WEIGHT), items


def detection_loss(head: Detect, branch: dict, targets: Tensor, hyp: Mapping[str, float], *,
                   topk: int = TOPK, topk2: int | None = None
                   ) -> tuple[Tensor, Tensor]:
    """One branch's (box, cls, dfl) with the gains (3,), and the same detached."""
    assigned, pieces = assigned_targets(head, branch, targets, topk=topk, topk2=topk2)
    distributions, logits, points, strides, pred_boxes, size = pieces
    total = assigned.scores.sum().clamp(min=1)
    cls = F.binary_cross_entropy_with_logits(logits, assigned.scores.to(logits.dtype),
                                             reduction="none").sum() / total
    box, dfl = _box_terms(head.reg_max, distributions, pred_boxes, points,
                          assigned.boxes / strides, assigned.scores, total,
                          assigned.foreground, size, strides)
    terms = torch.stack((box * hyp["box"], cls * hyp["cls"], dfl * hyp["dfl"]))
    return terms, terms.detach()


def assigned_targets(head: Detect, branch: dict, targets: Tensor, *, topk: int = TOPK,
                     topk2: int | None = None) -> tuple[Assigned, tuple]:
    """The assigner's result for one branch and the pieces the loss needs: box logits (b, a,
    4 reg_max), class logits (b, a, nc), points (a, 2) in grid units, their strides (a, 1),
    the predicted boxes in grid units, the image size (h, w)."""
    distributions = branch["boxes"].permute(0, 2, 1).contiguous()
    logits = branch["scores"].permute(0, 2, 1).contiguous()
    feats = branch["feats"]
    stride = head.stride.to(logits.device)
    points, strides = make_anchors(feats, stride, 0.5)
    size = torch.tensor(feats[0].shape[2:], device=logits.device, dtype=logits.dtype) * stride[0]
    labels, boxes, mask = _padded(targets.to(logits.device), logits.shape[0], size)
    pred_boxes = _decode(distributions, points, head.reg_max)
    assigned = assign(logits.detach().sigmoid(), (pred_boxes.detach() * strides).to(boxes.dtype),
                      points * strides, labels, boxes, mask, nc=head.nc,
                      stride_val=float(stride[1] if len(stride) > 1 else stride[0]), topk=topk,
                      topk2=topk2, alpha=ALPHA, beta=BETA)
    return assigned, (distributions, logits, points, strides, pred_boxes, size)


def _padded(targets: Tensor, batch: int, size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per image its boxes in order, padded to the longest list: labels (b, n, 1), xyxy pixels
    (b, n, 4), and which rows are boxes (b, n, 1)."""
    per_image = [targets[targets[:, 0] == i, 1:] for i in range(batch)]
    longest = max((len(rows) for rows in per_image), default=0)
    padded = torch.zeros(batch, longest, 5, device=targets.device)
    for i, rows in enumerate(per_image):
        padded[i, :len(rows)] = rows
    if longest:
        padded[..., 1:5] = xywh2xyxy(padded[..., 1:5] * size[[1, 0, 1, 0]])
    labels, boxes = padded.split((1, 4), 2)
    return labels, boxes, boxes.sum(2, keepdim=True) > 0


def _decode(distributions: Tensor, points: Tensor, reg_max: int) -> Tensor:
    """Boxes xyxy in grid units from the box logits: DFL expectations as distances."""
    if reg_max > 1:
        b, a, c = distributions.shape
        bins = torch.arange(reg_max, dtype=distributions.dtype, device=distributions.device)
        distributions = distributions.view(b, a, 4, c // 4).softmax(3).matmul(bins)
    return dist2bbox(distributions, points, xywh=False)


def _box_terms(reg_max: int, distributions: Tensor, pred_boxes: Tensor, points: Tensor,
               target_boxes: Tensor, target_scores: Tensor, total: Tensor,
               foreground: Tensor, size: Tensor, strides: Tensor) -> tuple[Tensor, Tensor]:
    fg = foreground.nonzero(as_tuple=True)
    weight = target_scores[fg].sum(-1, keepdim=True)
    iou = corner_ciou(pred_boxes[fg], target_boxes[fg]).unsqueeze(-1)
    box = ((1.0 - iou) * weight).sum() / total
    if reg_max > 1:
        distances = bbox2dist(points, target_boxes, reg_max - 1)
        dfl = _dfl(distributions[fg].view(-1, reg_max), distances[fg], reg_max) * weight
        return box, dfl.sum() / total
    distances = bbox2dist(points, target_boxes) * strides
    predicted = distributions * strides
    scale = torch.stack((size[1], size[0], size[1], size[0]))
    l1 = F.l1_loss(predicted[fg] / scale, distances[fg] / scale, reduction="none")
    return box, (l1.mean(-1, keepdim=True) * weight).sum() / total


def _dfl(logits: Tensor, target: Tensor, reg_max: int) -> Tensor:
    """Distribution focal loss: cross-entropy with the two bins around each target distance,
    weighted by closeness; mean over the four sides, (n, 1)."""
    target = target.clamp(0, reg_max - 1 - 0.01)
    left = target.long()
    right = left + 1
    left_weight = right - target
    log_p = F.log_softmax(logits, dim=1)
    picked = (log_p.gather(1, left.view(-1, 1)).view(left.shape) * left_weight
              + log_p.gather(1, right.view(-1, 1)).view(left.shape) * (1 - left_weight))
    return -picked.mean(-1, keepdim=True)


def batch_positives(built: BuiltModel, train_output: Any, targets: Tensor,
                    hyp: Mapping[str, float]) -> tuple[tuple[int, ...], int]:
    """(foreground points per level, boxes with none) the assigner gives these targets from the
    predictions `train_output` (the fresh model's: its assignment at step 0)."""
    head = _head(built)
    branch = _branch(train_output)
    with torch.no_grad():
        assigned, _ = assigned_targets(head, branch, targets.to(branch["boxes"].device))
    cells = [f.shape[2] * f.shape[3] for f in branch["feats"]]
    per_level = assigned.foreground.sum(0).split(cells)
    # Foreground points only ever point at an image's real boxes: count the distinct ones.
    matched = sum(len(boxes[points].unique())
                  for boxes, points in zip(assigned.box_index, assigned.foreground))
    return tuple(int(level.sum()) for level in per_level), len(targets) - matched


def prior_loss(built: BuiltModel, grid_shapes, targets: Tensor, batch: int,
               hyp: Mapping[str, float]) -> tuple[Tensor, Tensor]:
    """The loss of the bias priors alone (`trainer.prior_output`): YD706's reference."""
    return compute_loss(built, prior_output(built, grid_shapes, batch), targets, hyp)
