"""Detection metrics with YOLOv5 v7.0's semantics: box IoU, NMS, TP matching, per-class AP.

These are the numbers YOLOv5's val.py reports (P, R, mAP@0.5, mAP@0.5:0.95), recomputed so the
overfit check can say "the model learns" in YOLOv5's own terms; they are checked against values
recorded from YOLOv5 (`../shared/golden/numerics`). Nothing here plots, prints, or keeps a time
limit (YOLOv5's NMS stops after a few seconds; ours always finishes). Torch functions run on
their input's device; `ap_per_class` and friends work in numpy, as YOLOv5's do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

MAX_WH = 7680  # class offset in pixels for batched NMS (larger than any image side)
MAX_NMS = 30000  # most candidates per image handed to NMS
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed trapz


def xywh2xyxy(x: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """(..., 4) centre x, centre y, width, height -> (..., 4) x1, y1, x2, y2; input untouched."""
    y = x.clone() if isinstance(x, Tensor) else np.copy(x)
    y[..., 0] = x[..., 0] - x[..., 2] / 2
    y[..., 1] = x[..., 1] - x[..., 3] / 2
    y[..., 2] = x[..., 0] + x[..., 2] / 2
    y[..., 3] = x[..., 1] + x[..., 3] / 2
    return y


def clip_boxes(boxes: Tensor, window: Sequence[float]) -> Tensor:
    """A copy of (n, 4+) boxes x1, y1, x2, y2, ... with the corners clamped into `window` (x1, y1,
    x2, y2): the image a box was predicted on, as validation clips before matching."""
    x1, y1, x2, y2 = window
    clipped = boxes.clone()
    clipped[:, 0:4:2] = clipped[:, 0:4:2].clamp(x1, x2)
    clipped[:, 1:4:2] = clipped[:, 1:4:2].clamp(y1, y2)
    return clipped


def box_iou(box1: Tensor, box2: Tensor, eps: float = 1e-7) -> Tensor:
    """IoU of every pair of xyxy boxes: box1 (N, 4), box2 (M, 4) -> (N, M).

    `eps` is YOLOv5's guard against 0/0 in the denominator; NMS passes 0 to match torchvision.
    """
    a1, a2 = box1[:, None, :2], box1[:, None, 2:]
    b1, b2 = box2[None, :, :2], box2[None, :, 2:]
    inter = (torch.min(a2, b2) - torch.max(a1, b1)).clamp(0).prod(2)
    return inter / (_area(box1)[:, None] + _area(box2)[None, :] - inter + eps)


def _area(box: Tensor) -> Tensor:
    return (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])


def greedy_nms(boxes: Tensor, scores: Tensor, iou_thres: float) -> Tensor:
    """Indices of the boxes kept by greedy NMS, highest score first (torchvision's result; the
    order of boxes with tied scores may differ).

    Keep the highest-scoring box, drop every remaining box whose IoU with it exceeds
    `iou_thres` (0 to 1), repeat on what is left. boxes (n, 4) xyxy, scores (n,) -> (k,) int64.
    Done in two steps so that 30,000 candidates take a second, not minutes: find every pair
    that overlaps above the threshold, then walk the boxes in score order once.
    """
    if not 0 <= iou_thres <= 1:
        raise ValueError(f"iou_thres must be between 0 and 1, got {iou_thres}")
    order = scores.argsort(descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    first, second = _overlapping_pairs(boxes, iou_thres)
    a, b = rank[first], rank[second]
    winner, loser = torch.minimum(a, b), torch.maximum(a, b)
    kept = _walk(order.numel(), winner.cpu().numpy(), loser.cpu().numpy())
    return order[torch.from_numpy(kept).to(order.device)]


def _overlapping_pairs(boxes: Tensor, iou_thres: float, rows: int = 128) -> tuple[Tensor, Tensor]:
    """Index pairs (i, j), i != j, of boxes whose IoU exceeds iou_thres, each at least once.

    Boxes are swept in order of x1, `rows` at a time, against the boxes that start before the
    block's right edge: no other box can overlap it (and the class offsets of batched NMS keep
    each class apart, so a block meets little more than its own class).
    """
    x1, by_x1 = boxes[:, 0].sort()
    firsts, seconds = [], []
    for start in range(0, len(boxes), rows):
        block = by_x1[start:start + rows]
        stop = int(torch.searchsorted(x1, boxes[block, 2].max(), side="left"))
        others = by_x1[start:max(stop, start + len(block))]
        iou = box_iou(boxes[block], boxes[others], eps=0.0)  # torchvision's formula, no eps
        r, c = (iou > iou_thres).nonzero(as_tuple=True)  # NaN (empty boxes) never suppresses
        firsts.append(block[r])
        seconds.append(others[c])
    if not firsts:
        return by_x1[:0], by_x1[:0]
    first, second = torch.cat(firsts), torch.cat(seconds)
    differ = first != second
    return first[differ], second[differ]


def _walk(n: int, winner: np.ndarray, loser: np.ndarray) -> np.ndarray:
    """Ranks kept by greedy NMS given who would suppress whom (ranks, best first), ascending.

    A box's fate is settled once every better box has been seen, so one pass in rank order
    decides all: a kept box removes the boxes it overlaps.
    """
    keep = np.ones(n, dtype=bool)
    by_winner = np.argsort(winner, kind="stable")
    winner, loser = winner[by_winner], loser[by_winner]
    sources, starts = np.unique(winner, return_index=True)
    ends = np.append(starts[1:], len(winner))
    for u, a, b in zip(sources, starts, ends):
        if keep[u]:
            keep[loser[a:b]] = False
    return np.flatnonzero(keep)


@lru_cache(maxsize=1)
def _torchvision_nms() -> Callable[[Tensor, Tensor, float], Tensor] | None:
    """torchvision.ops.nms when torchvision imports and its compiled operator runs, else None."""
    try:  # one built for another torch fails on import or on first call: no `nms` operator
        from torchvision.ops import nms

        nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    except (ImportError, OSError, RuntimeError):
        return None
    return nms


def nms(boxes: Tensor, scores: Tensor, iou_thres: float) -> Tensor:
    """torchvision's NMS when it works here, else `greedy_nms`: the same boxes kept, in the same
    order unless two scores tie (checked against torchvision on a GPU machine)."""
    tv_nms = _torchvision_nms()
    if tv_nms is not None:
        try:
            return tv_nms(boxes, scores, iou_thres)
        except (RuntimeError, NotImplementedError):  # e.g. a CPU-only build given CUDA tensors
            pass
    return greedy_nms(boxes, scores, iou_thres)


def non_max_suppression(decoded: Tensor | Sequence[Tensor], conf_thres: float = 0.25,
                        iou_thres: float = 0.45, max_det: int = 300,
                        classes: Sequence[int] | None = None, agnostic: bool = False,
                        multi_label: bool = False) -> list[Tensor]:
    """YOLOv5 v7.0's non_max_suppression without its time limit and box merging.

    `decoded` is (batch, n, 5 + nc): xywh in pixels, objectness, class scores (a model's eval
    output `(decoded, raw)` is accepted too). Returns per image a (k, 6) tensor of x1, y1, x2,
    y2, conf, cls sorted by conf, where conf = objectness * class score, k <= max_det.
    """
    for name, value in (("conf_thres", conf_thres), ("iou_thres", iou_thres)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    if isinstance(decoded, (list, tuple)):
        decoded = decoded[0]
    return [_nms_image(x, conf_thres, iou_thres, max_det, classes, agnostic, multi_label)
            for x in decoded]


def _nms_image(x: Tensor, conf_thres: float, iou_thres: float, max_det: int,
               classes: Sequence[int] | None, agnostic: bool, multi_label: bool) -> Tensor:
    """One image's (n, 5 + nc) predictions -> (k, 6) detections."""
    x = x[x[:, 4] > conf_thres]  # objectness first: cheap, and YOLOv5's candidate set
    det = _candidates(x, conf_thres, multi_label)
    if classes is not None:
        det = det[(det[:, 5:6] == torch.tensor(classes, device=det.device)).any(1)]
    det = det[det[:, 4].argsort(descending=True)[:MAX_NMS]]
    offsets = det[:, 5:6] * (0 if agnostic else MAX_WH)  # classes never suppress each other
    keep = nms(det[:, :4] + offsets, det[:, 4], iou_thres)
    return det[keep[:max_det]]


def _candidates(x: Tensor, conf_thres: float, multi_label: bool) -> Tensor:
    """(n, 5 + nc) -> (m, 6) rows x1, y1, x2, y2, conf, cls with conf = obj * cls > thres."""
    box = xywh2xyxy(x[:, :4])
    scores = x[:, 5:] * x[:, 4:5]
    if multi_label:
        i, j = (scores > conf_thres).nonzero(as_tuple=False).T
        return torch.cat((box[i], scores[i, j, None], j[:, None].to(x.dtype)), 1)
    conf, j = scores.max(1, keepdim=True)
    return torch.cat((box, conf, j.to(x.dtype)), 1)[conf.view(-1) > conf_thres]


def match_predictions(detections: Tensor, labels: Tensor, iouv: Tensor | None = None) -> Tensor:
    """Which detections are true positives at each IoU threshold (val.py's process_batch).

    detections (k, 6) x1, y1, x2, y2, conf, cls; labels (n, 5) cls, x1, y1, x2, y2; iouv (t,)
    thresholds, default 0.5:0.05:0.95. Returns (k, t) bool. At each threshold, label-detection
    pairs with IoU >= threshold and equal classes are sorted by IoU (highest first), then each
    detection keeps its first pair, then each label keeps its first remaining pair, counted in
    detection order as YOLOv5 does (it does not re-sort by IoU between the two steps).
    """
    device = detections.device
    if iouv is None:
        iouv = torch.linspace(0.5, 0.95, 10, device=device)
    correct = torch.zeros(detections.shape[0], iouv.numel(), dtype=torch.bool, device=device)
    iou = box_iou(labels[:, 1:], detections[:, :4])
    same_class = labels[:, 0:1] == detections[:, 5]
    for t, thr in enumerate(iouv):
        label_i, det_i = torch.where((iou >= thr) & same_class)
        if label_i.numel():
            correct[_one_to_one(label_i, det_i, iou[label_i, det_i]), t] = True
    return correct


def _one_to_one(label_i: Tensor, det_i: Tensor, iou: Tensor) -> Tensor:
    """Detection indices of the pairs left after YOLOv5's two np.unique passes."""
    if label_i.numel() > 1:
        # numpy's argsort()[::-1]: ascending (stable for small inputs), then reversed
        order = iou.sort(stable=True).indices.flip(0)
        label_i, det_i = label_i[order], det_i[order]
        first = _first_of_each(det_i)  # returned in ascending detection order
        label_i, det_i = label_i[first], det_i[first]
        first = _first_of_each(label_i)
        det_i = det_i[first]
    return det_i


def _first_of_each(keys: Tensor) -> Tensor:
    """Position of each key's first occurrence, ordered by key: np.unique(return_index=True)."""
    n = keys.numel()
    pos = torch.arange(n, device=keys.device)
    first = torch.full((int(keys.max()) + 1,), n, dtype=torch.long, device=keys.device)
    first = first.scatter_reduce(0, keys, pos, reduce="amin")
    return first[first < n]


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under one precision-recall curve, YOLOv5's 101-point interpolation (COCO's).

    The curve is closed with (0, 1) and (1, 0), precision is replaced by its envelope (the
    highest precision at this or any larger recall), and the envelope is sampled at recall
    0, 0.01, ..., 1 and integrated with the trapezoidal rule.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(_trapezoid(np.interp(x, mrec, mpre), x))



def smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    """Box filter of width about 2 * f * len(y) (odd), edges padded with the end values."""
    nf = round(len(y) * f * 2) // 2 + 1
    pad = np.ones(nf // 2)
    yp = np.concatenate((pad * y[0], y, pad * y[-1]), 0)
    return np.convolve(yp, np.ones(nf) / nf, mode="valid")


def ap_per_class(tp, conf, pred_cls, target_cls, eps: float = 1e-16) -> dict[str, np.ndarray]:
    """YOLOv5 v7.0's ap_per_class, without its plots.

    tp (n, t) bool: prediction correct at IoU threshold j; conf (n,); pred_cls (n,); target_cls
    (m,) the class of every label. Returns, per unique label class (`classes`, int): `ap`
    (classes, t) and `p`, `r`, `f1` (classes,) at the confidence where the class-mean F1
    (smoothed) is highest, with `tp` = round(r * labels) and `fp` = round(tp / p - tp) there.
    Classes without labels or predictions keep zeros. Arrays or CPU tensors are accepted.
    """
    tp, conf, pred_cls, target_cls = (_numpy(a) for a in (tp, conf, pred_cls, target_cls))
    order = np.argsort(-conf)
    tp, conf, pred_cls = tp[order].astype(np.float64), conf[order], pred_cls[order]
    classes, nt = np.unique(target_cls, return_counts=True)
    px = np.linspace(0, 1, 1000)  # confidence grid for the P, R and F1 curves
    ap = np.zeros((len(classes), tp.shape[1]))
    p, r = np.zeros((len(classes), len(px))), np.zeros((len(classes), len(px)))
    for ci, c in enumerate(classes):
        mine = pred_cls == c
        if mine.any() and nt[ci]:
            ap[ci], p[ci], r[ci] = _class_curves(tp[mine], conf[mine], nt[ci], px, eps)
    f1 = 2 * p * r / (p + r + eps)
    i = smooth(f1.mean(0), 0.1).argmax()  # max-F1 confidence, shared by all classes
    p, r, f1 = p[:, i], r[:, i], f1[:, i]
    tp_count = (r * nt).round()
    fp_count = (tp_count / (p + eps) - tp_count).round()
    return {"tp": tp_count, "fp": fp_count, "p": p, "r": r, "f1": f1, "ap": ap,
            "classes": classes.astype(int)}


def precision_recall(tp: np.ndarray, conf: np.ndarray, n_labels: int, grid: np.ndarray,
                     eps: float = 1e-16) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One class's predictions (tp (n, thresholds), sorted by conf, descending) -> recall and
    precision after each prediction per IoU threshold, and P and R over the confidence `grid` at
    the first threshold: what every family's ap_per_class builds its AP and curves from."""
    tpc = tp.cumsum(0)
    fpc = (1 - tp).cumsum(0)
    recall = tpc / (n_labels + eps)
    precision = tpc / (tpc + fpc)
    # conf falls along the list, so interpolate on -conf
    r = np.interp(-grid, -conf, recall[:, 0], left=0)
    p = np.interp(-grid, -conf, precision[:, 0], left=1)
    return recall, precision, p, r


def _class_curves(tp: np.ndarray, conf: np.ndarray, n_labels: int, px: np.ndarray,
                  eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One class's predictions (sorted by conf, descending) -> AP per threshold, P(px), R(px)."""
    recall, precision, p, r = precision_recall(tp, conf, n_labels, px, eps)
    ap = np.array([compute_ap(recall[:, j], precision[:, j]) for j in range(tp.shape[1])])
    return ap, p, r


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


def detection_metrics(stats: Sequence) -> dict[str, float]:
    """val.py's summary: mean over classes of P, R, AP@0.5 and AP@0.5:0.95.

    `stats` is (tp, conf, pred_cls, target_cls), each concatenated over all images. Without
    any true positive every figure is 0, as in YOLOv5.
    """
    tp, conf, pred_cls, target_cls = (_numpy(a) for a in stats)
    if not tp.size or not tp.any():
        return {"mp": 0.0, "mr": 0.0, "map50": 0.0, "map": 0.0}
    res = ap_per_class(tp, conf, pred_cls, target_cls)
    return {"mp": float(res["p"].mean()), "mr": float(res["r"].mean()),
            "map50": float(res["ap"][:, 0].mean()), "map": float(res["ap"].mean())}
