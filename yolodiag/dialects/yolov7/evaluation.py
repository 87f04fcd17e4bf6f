"""YOLOv7's validation as train.py runs it after each epoch (test.py's `test`): its NMS, its
greedy matching of predictions to labels, its AP; what the overfit loop scores its batch with.

Written from test.py, utils/general.py and utils/metrics.py at commit a207844 (facts only) and
checked against numbers recorded there (../shared/golden/yolov7/numerics). Where YOLOv7 departs
from YOLOv5 v7.0 (yolodiag.metrics): a one-class model is scored by objectness alone; the class
offset of batched NMS is 4096 px; each prediction is matched once, to its best-IoU label, and
keeps that verdict at every IoU threshold; P and R are read at the unsmoothed F1 maximum; the
precision-recall curve ends at `recall[-1] + 0.01` unless `v5_metric`. Nothing here plots or
prints. Torch functions run on their input's device; AP works in numpy, as YOLOv7's does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from yolodiag.dialects.common.training import objectness_candidates as candidates
from yolodiag.metrics import box_iou, clip_boxes, nms, precision_recall, xywh2xyxy

# train.py calls test.test() without thresholds, so the per-epoch figures use the function's
# defaults (the test.py command line defaults to IoU 0.65; README evaluates with that too).
CONF = 0.001
IOU = 0.6
CLASS_OFFSET = 4096  # px added per class index so that batched NMS keeps classes apart
MAX_DET = 300  # fixed in YOLOv7's NMS: no argument changes it
MAX_NMS = 30000  # most candidates per image handed to NMS
IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)  # mAP@0.5:0.95
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed trapz

__all__ = ["CONF", "IOU", "ap_per_class", "candidates", "compute_ap", "correct",
           "detection_metrics", "fitness", "match_predictions", "non_max_suppression"]


def non_max_suppression(decoded: Tensor | Sequence[Tensor], conf_thres: float = CONF,
                        iou_thres: float = IOU, multi_label: bool = True,
                        agnostic: bool = False) -> list[Tensor]:
    """YOLOv7's non_max_suppression as test.py calls it (multi-label, no prior labels).

    `decoded` (batch, n, 5 + nc): xywh in pixels, objectness, class probabilities (a model's
    eval output `(decoded, maps)` is accepted). Candidates have objectness above `conf_thres`;
    their confidence is objectness times class probability, or objectness alone when nc == 1;
    with nc > 1 and `multi_label`, each class whose confidence passes `conf_thres` is one
    detection, else the best class is. Returns per image (k, 6) x1, y1, x2, y2, conf, cls,
    highest confidence first, k <= 300.

    YOLOv7 also stops after 10 s of NMS over a batch, leaving later images empty; we never do:
    it would make the figures depend on the machine.
    """
    for name, value in (("conf_thres", conf_thres), ("iou_thres", iou_thres)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    if isinstance(decoded, (list, tuple)):
        decoded = decoded[0]
    return [_nms_image(x, conf_thres, iou_thres, multi_label, agnostic) for x in decoded]


def _nms_image(x: Tensor, conf_thres: float, iou_thres: float, multi_label: bool,
               agnostic: bool) -> Tensor:
    """One image's (n, 5 + nc) predictions -> (k, 6) detections."""
    nc = x.shape[1] - 5
    x = x[x[:, 4] > conf_thres]
    # a one-class model's class output is not trained (its class loss is zero): obj decides
    scores = x[:, 4:5].expand(-1, nc) if nc == 1 else x[:, 5:] * x[:, 4:5]
    box = xywh2xyxy(x[:, :4])
    if multi_label and nc > 1:
        i, j = (scores > conf_thres).nonzero(as_tuple=False).T
        det = torch.cat((box[i], scores[i, j, None], j[:, None].to(x.dtype)), 1)
    else:
        conf, j = scores.max(1, keepdim=True)
        det = torch.cat((box, conf, j.to(x.dtype)), 1)[conf.view(-1) > conf_thres]
    if len(det) > MAX_NMS:
        det = det[det[:, 4].argsort(descending=True)[:MAX_NMS]]
    offsets = det[:, 5:6] * (0 if agnostic else CLASS_OFFSET)
    keep = nms(det[:, :4] + offsets, det[:, 4], iou_thres)  # highest score first
    return det[keep[:MAX_DET]]


def match_predictions(detections: Tensor, labels: Tensor, iouv: Tensor | None = None) -> Tensor:
    """Which detections are true positives at each IoU threshold, by test.py's greedy rule.

    detections (k, 6) x1, y1, x2, y2, conf, cls in NMS order; labels (n, 5) cls, x1, y1, x2,
    y2; iouv (t,) thresholds, default 0.5:0.05:0.95. Returns (k, t) bool. Per label class,
    each detection of that class picks its best-IoU label of the class; walking the detections
    in order, one whose best IoU exceeds iouv[0] claims its label if no earlier detection did,
    and is then correct at every threshold its IoU exceeds. A detection whose best label is
    already claimed stays false everywhere, even when it overlaps another label of its class
    (YOLOv5 v7.0 matches one to one on the whole IoU matrix at each threshold instead).
    """
    if iouv is None:
        iouv = IOU_THRESHOLDS
    iouv = iouv.to(detections.device)
    correct = torch.zeros(detections.shape[0], iouv.numel(), dtype=torch.bool,
                          device=detections.device)
    # (test.py also stops a class's walk once every label of the image is claimed: then no
    # label is left to claim, so the outcome is the same without that shortcut.)
    for cls in labels[:, 0].unique():
        mine = (detections[:, 5] == cls).nonzero(as_tuple=False).view(-1)
        if not mine.numel():
            continue
        theirs = (labels[:, 0] == cls).nonzero(as_tuple=False).view(-1)
        # YOLOv7's box_iou has no epsilon: two empty boxes give NaN, which matches nothing
        best_iou, best = box_iou(detections[mine, :4], labels[theirs, 1:5], eps=0.0).max(1)
        claimed: set[int] = set()
        for j in (best_iou > iouv[0]).nonzero(as_tuple=False).view(-1).tolist():
            label = int(best[j])
            if label not in claimed:
                claimed.add(label)
                correct[mine[j]] = best_iou[j] > iouv
    return correct


def correct(detections: Tensor, labels: Tensor, window: Sequence[float]) -> Tensor:
    """(k, 10) bool: which of one image's detections (k, 6) are true positives at IoU
    0.5:0.95 against its labels (n, 5) cls, x1, y1, x2, y2. Detections and labels are both
    clipped to `window` first, as test.py's scale_coords clips both to the original image."""
    clipped = torch.cat((labels[:, :1], clip_boxes(labels[:, 1:5], window)), 1)
    return match_predictions(clip_boxes(detections, window), clipped)


def compute_ap(recall: np.ndarray, precision: np.ndarray, v5_metric: bool = False) -> float:
    """Area under one precision-recall curve by YOLOv7's compute_ap: the curve starts at
    (0, 1) and ends at precision 0 and recall `recall[-1] + 0.01` (1.0 with `v5_metric`, as
    YOLOv5 v7.0), precision is replaced by its envelope (the highest at this or any larger
    recall), sampled at recall 0, 0.01, ..., 1 and integrated with the trapezoidal rule."""
    end = 1.0 if v5_metric else recall[-1] + 0.01
    mrec = np.concatenate(([0.0], recall, [end]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(_trapezoid(np.interp(x, mrec, mpre), x))


def ap_per_class(tp, conf, pred_cls, target_cls, v5_metric: bool = False) -> dict[str, np.ndarray]:
    """YOLOv7's ap_per_class, without its plots.

    tp (n, t) bool: prediction correct at IoU threshold j; conf (n,); pred_cls (n,);
    target_cls (m,) the class of every label. Returns, per unique label class (`classes`,
    int32): `ap` (classes, t) and `p`, `r`, `f1` (classes,) at the confidence of the highest
    class-mean F1 (not smoothed, unlike YOLOv5 v7.0; YOLOv7 returns no tp/fp counts).
    Classes without labels or predictions keep zeros. Arrays or CPU tensors are accepted.
    """
    tp, conf, pred_cls, target_cls = (_numpy(a) for a in (tp, conf, pred_cls, target_cls))
    order = np.argsort(-conf)
    tp, conf, pred_cls = tp[order].astype(np.float64), conf[order], pred_cls[order]
    classes = np.unique(target_cls)
    px = np.linspace(0, 1, 1000)  # confidence grid of the P, R and F1 curves
    ap = np.zeros((len(classes), tp.shape[1]))
    p, r = np.zeros((len(classes), len(px))), np.zeros((len(classes), len(px)))
    for ci, c in enumerate(classes):
        mine = pred_cls == c
        n_labels = (target_cls == c).sum()
        if not mine.any() or not n_labels:
            continue
        recall, precision, p[ci], r[ci] = precision_recall(tp[mine], conf[mine], n_labels, px)
        ap[ci] = [compute_ap(recall[:, j], precision[:, j], v5_metric) for j in range(tp.shape[1])]
    f1 = 2 * p * r / (p + r + 1e-16)
    best = f1.mean(0).argmax()  # one confidence for all classes
    return {"p": p[:, best], "r": r[:, best], "ap": ap, "f1": f1[:, best],
            "classes": classes.astype(np.int32)}


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


def detection_metrics(stats: Sequence, v5_metric: bool = False) -> dict[str, float]:
    """test.py's summary: mean over classes of P, R, AP@0.5 and AP@0.5:0.95.

    `stats` is (tp, conf, pred_cls, target_cls), each concatenated over all images. Without
    any prediction correct at IoU 0.5 every figure is 0, as in test.py.
    """
    tp, conf, pred_cls, target_cls = (_numpy(a) for a in stats)
    if not tp.size or not tp.any():
        return {"mp": 0.0, "mr": 0.0, "map50": 0.0, "map": 0.0}
    res = ap_per_class(tp, conf, pred_cls, target_cls, v5_metric)
    return {"mp": float(res["p"].mean()), "mr": float(res["r"].mean()),
            "map50": float(res["ap"][:, 0].mean()), "map": float(res["ap"].mean())}


def fitness(metrics: dict[str, float]) -> float:
    """What train.py keeps the best checkpoint by: 0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95."""
    return 0.1 * metrics["map50"] + 0.9 * metrics["map"]
