"""Box arithmetic of Ultralytics 8.4.190's anchor-free heads, as plain functions: the anchor
points of each grid cell, left/top/right/bottom distances <-> boxes, and the one-to-one head's
top-k selection. The heads decode with them and the loss reuses them; nothing here holds state.

Anchor points are in grid units of their level (cell index + offset); multiply by the level's
stride for pixels, as the heads do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def make_anchors(feats: Sequence[Tensor], strides, offset: float = 0.5
                 ) -> tuple[Tensor, Tensor]:
    """Cell points of every level, row-major within a level, levels in order.

    feats: per-level maps (B, C, H, W) (only their sizes are read). Returns the points (A, 2) as
    (x, y) in grid units and the stride of each point (A, 1), A = sum of H * W, both in the
    dtype and on the device of feats[0].
    """
    like = feats[0]
    points, point_strides = [], []
    for level, feat in enumerate(feats):
        h, w = feat.shape[2:]
        xs = torch.arange(w, device=like.device).to(like.dtype) + offset
        ys = torch.arange(h, device=like.device).to(like.dtype) + offset
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x, grid_y), -1).reshape(-1, 2))
        # A product, not torch.full: strides may be a tensor on the meta device.
        point_strides.append(like.new_ones(h * w, 1) * strides[level])
    return torch.cat(points), torch.cat(point_strides)


def dist2bbox(distance: Tensor, anchor_points: Tensor, xywh: bool = True, dim: int = -1
              ) -> Tensor:
    """Distances (left, top, right, bottom) from each point -> boxes, along `dim`: centre and
    size (xywh) or corners (xyxy). `distance` has 4 entries along `dim`, `anchor_points` 2."""
    left_top, right_bottom = distance.chunk(2, dim)
    top_left_corner = anchor_points - left_top
    bottom_right_corner = anchor_points + right_bottom
    if xywh:
        return torch.cat(((top_left_corner + bottom_right_corner) / 2,
                          bottom_right_corner - top_left_corner), dim)
    return torch.cat((top_left_corner, bottom_right_corner), dim)


def bbox2dist(anchor_points: Tensor, bbox: Tensor, reg_max: float | None = None) -> Tensor:
    """Corner boxes (..., 4) xyxy -> distances (left, top, right, bottom) from each point
    (..., 2); with `reg_max`, clamped to [0, reg_max - 0.01] (the last DFL bin stays usable)."""
    top_left_corner, bottom_right_corner = bbox.chunk(2, -1)
    distance = torch.cat((anchor_points - top_left_corner, bottom_right_corner - anchor_points),
                         -1)
    return distance if reg_max is None else distance.clamp(0, reg_max - 0.01)


def top_detections(boxes: Tensor, scores: Tensor, max_det: int) -> Tensor:
    """The one-to-one head's NMS-free output: (B, A, 4) boxes and (B, A, nc) probabilities ->
    (B, k, 6) rows (box, score, class as float), k = min(max_det, A), best first.

    First the k anchors with the highest best-class score, then the k best (anchor, class)
    pairs among those, so one anchor may give several rows (one per class).
    """
    k = min(max_det, scores.shape[1])
    nc = scores.shape[2]
    anchor_index = scores.amax(-1).topk(k, dim=1).indices  # (B, k)
    candidates = scores.gather(1, anchor_index[..., None].expand(-1, -1, nc))
    best, flat_index = candidates.flatten(1).topk(k, dim=1)
    chosen = anchor_index.gather(1, flat_index // nc)
    chosen_boxes = boxes.gather(1, chosen[..., None].expand(-1, -1, boxes.shape[-1]))
    classes = (flat_index % nc).to(scores.dtype)
    return torch.cat((chosen_boxes, best[..., None], classes[..., None]), -1)
