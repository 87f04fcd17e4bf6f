"""YOLOv7's ComputeLossOTA target assignment (SimOTA over the anchor candidates), written from its
mathematics: which of the candidate cells `matching.assign` offers each ground-truth box really
trains, and against which box.

Per image, every candidate (a cell and anchor of some level that some box of the image matched)
is decoded in pixels and priced against every box of the image: cost = BCE of sqrt(sigmoid(class)
* sigmoid(objectness)) against the box's one-hot class, summed over classes, plus 3 * -log(IoU +
1e-8). Each box takes its k cheapest candidates, k = the integer part of the sum of its ten best
IoUs (at least 1); a candidate two boxes took goes to the box that prices it cheapest. The
chosen candidates keep their cell and anchor but learn the box that took them, which need not
be the box whose match offered them.

The image side in pixels prices the boxes: YOLOv7 takes the height of the image tensor and uses
it for x and y alike (it assumes square batches); `ota_levels` takes it as given. Tensors
follow the raw maps; nothing here needs a GPU: an image without boxes is skipped and a batch
without any leaves every level empty (YOLOv7 then builds its empty tensors on 'cuda:0', which
fails on a machine without CUDA; on CUDA its loss is what ours gives everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from yolodiag.dialects.common.matching import Assignment, LevelAssignment, empty_level

TOP_IOUS = 10  # how many of a box's best IoUs sum to its number of positives
IOU_COST_WEIGHT = 3.0
LOG_EPS = 1e-8


def _corners(xywh: Tensor) -> Tensor:
    """(n, 4) centre, size -> (n, 4) x1, y1, x2, y2."""
    x, y, w, h = xywh.unbind(1)
    return torch.stack((x - w / 2, y - h / 2, x + w / 2, y + h / 2), 1)


def pairwise_iou(boxes: Tensor, others: Tensor) -> Tensor:
    """IoU of every box (g, 4) with every other (m, 4), corners -> (g, m); no epsilon, as
    YOLOv7's."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_others = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    top_left = torch.max(boxes[:, None, :2], others[:, :2])
    bottom_right = torch.min(boxes[:, None, 2:], others[:, 2:])
    inter = (bottom_right - top_left).clamp(0).prod(2)
    return inter / (area[:, None] + area_others - inter)


def ota_levels(candidates: Assignment, raw_maps: Sequence[Tensor], targets: Tensor,
               strides: Tensor, img_size: int) -> tuple[LevelAssignment, ...]:
    """The positives ComputeLossOTA trains, per level, in its order (image by image, each in the
    candidates' order), with their box targets (in-cell xy, wh in grid units) and classes
    taken from the box that chose them.

    `candidates` is `assign` of `targets` (n, 6) on these maps' grids; `strides` (nl,) pixels
    per cell; `img_size` the (square) image side in pixels that `targets` are normalised to.
    """
    nl = len(raw_maps)
    p0 = raw_maps[0]
    na, nc = p0.shape[1], p0.shape[-1] - 5
    chosen: list[list[LevelAssignment]] = [[] for _ in range(nl)]
    with torch.no_grad():  # the choice is made on the predictions, not learnt through
        for image in range(p0.shape[0]):
            boxes = targets[targets[:, 0] == image]
            if boxes.shape[0] == 0:
                continue
            picked = _choose(candidates.levels, raw_maps, boxes, strides, image, img_size, nc)
            if picked is None:
                continue
            for level, rows in enumerate(picked):
                chosen[level].append(rows)
    levels = []
    for level, p in enumerate(raw_maps):
        if not chosen[level]:
            levels.append(empty_level(na, p.device, targets.dtype))
            continue
        levels.append(_with_targets(chosen[level], p.shape[2:4], na))
    return tuple(levels)


def _choose(levels: Sequence[LevelAssignment], raw_maps: Sequence[Tensor], boxes: Tensor,
            strides: Tensor, image: int, img_size: int, nc: int
            ) -> list[tuple[LevelAssignment, Tensor]] | None:
    """SimOTA for one image: per level, (the candidates of this image it keeps, the box row
    (6,) each learns); None when the image has no candidate at all."""
    own = [level.image == image for level in levels]
    decoded, scores, tags = [], [], []
    for i, (level, mine) in enumerate(zip(levels, own)):
        a, gj, gi = level.anchor[mine], level.gj[mine], level.gi[mine]
        pred = raw_maps[i][level.image[mine], a, gj, gi]
        cell = torch.stack((gi, gj), 1)
        xy = (pred[:, :2].sigmoid() * 2.0 - 0.5 + cell) * strides[i]
        wh = (pred[:, 2:4].sigmoid() * 2) ** 2 * level.anchor_wh[mine] * strides[i]
        decoded.append(_corners(torch.cat((xy, wh), 1)))
        scores.append(pred[:, 4:])
        tags.append(torch.full((a.shape[0],), i, device=a.device))
    decoded = torch.cat(decoded)
    if decoded.shape[0] == 0:
        return None
    scores, tags = torch.cat(scores), torch.cat(tags)
    iou = pairwise_iou(_corners(boxes[:, 2:6] * img_size), decoded)  # (g, m)
    cost = _class_cost(scores, boxes[:, 1].long(), nc) + IOU_COST_WEIGHT * -torch.log(
        iou + LOG_EPS)
    box_of = _match(cost, iou)
    keep = box_of >= 0
    picked = []
    for i, (level, mine) in enumerate(zip(levels, own)):
        here = keep & (tags == i)
        index = mine.nonzero().flatten()[here[tags == i]]
        picked.append((_subset(level, index), boxes[box_of[here]]))
    return picked


def _class_cost(scores: Tensor, classes: Tensor, nc: int) -> Tensor:
    """(g, m): BCE of the joint score sqrt(sigmoid(cls) * sigmoid(obj)) against each box's
    one-hot class, summed over the classes, through the logit of the joint score as YOLOv7
    rounds it."""
    g, m = classes.shape[0], scores.shape[0]
    joint = (scores[:, 1:].float().sigmoid() * scores[:, :1].sigmoid()).sqrt()
    logit = torch.log(joint / (1 - joint)).unsqueeze(0).expand(g, m, nc)
    onehot = F.one_hot(classes, nc).float().unsqueeze(1).expand(g, m, nc)
    return F.binary_cross_entropy_with_logits(logit, onehot, reduction="none").sum(-1)


def _match(cost: Tensor, iou: Tensor) -> Tensor:
    """(m,) the box each candidate trains for, -1 where none took it."""
    k = torch.topk(iou, min(TOP_IOUS, iou.shape[1]), dim=1).values.sum(1).int().clamp(min=1)
    taken = torch.zeros_like(cost)
    for box, count in enumerate(k.tolist()):
        taken[box, torch.topk(cost[box], count, largest=False).indices] = 1.0
    shared = taken.sum(0) > 1
    if shared.any():
        taken[:, shared] = 0.0
        taken[cost[:, shared].min(0).indices, shared] = 1.0
    keep = taken.sum(0) > 0
    box_of = torch.full((cost.shape[1],), -1, dtype=torch.long, device=cost.device)
    box_of[keep] = taken[:, keep].argmax(0)
    return box_of


def _subset(level: LevelAssignment, index: Tensor) -> LevelAssignment:
    return LevelAssignment(level.image[index], level.anchor[index], level.gj[index],
                           level.gi[index], level.box[index], level.cls[index],
                           level.anchor_wh[index], level.na)


def _with_targets(parts: list[tuple[LevelAssignment, Tensor]], grid: tuple[int, int], na: int
                  ) -> LevelAssignment:
    """One level's chosen candidates over all images, their box targets rebuilt from the boxes
    that chose them: xy relative to the candidate's own cell, wh in grid units."""
    ny, nx = grid
    levels, rows = zip(*parts)
    rows = torch.cat(rows)
    gi, gj = torch.cat([lv.gi for lv in levels]), torch.cat([lv.gj for lv in levels])
    box = rows[:, 2:6] * rows.new_tensor((nx, ny, nx, ny))
    box[:, :2] -= torch.stack((gi, gj), 1)
    return LevelAssignment(
        image=torch.cat([lv.image for lv in levels]),
        anchor=torch.cat([lv.anchor for lv in levels]), gj=gj, gi=gi, box=box,
        cls=rows[:, 1].long(), anchor_wh=torch.cat([lv.anchor_wh for lv in levels]), na=na)
