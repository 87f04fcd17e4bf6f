"""Ultralytics 8.4.190's validation as its trainer runs it after each epoch (DetectionValidator):
its NMS, its greedy matching of detections to labels, its AP and the fitness best.pt is kept by;
what the overfit loop scores its batch with.

Written from the mathematics of utils/nms.py, engine/validator.py, models/yolo/detect/val.py and
utils/metrics.py in 8.4.190 (facts only: thresholds, formulas, the order of operations) and
checked against numbers recorded there (../shared/golden/ultralytics/numerics). Where it departs
from YOLOv5 v7.0 (yolodiag.metrics) and YOLOv7: the head has no objectness, so a cell is a
candidate when its best class probability passes `conf` and each class probability is a
confidence; IoU 0.7; the input is channel-first (B, 4 + nc, A); an end-to-end head's rows only
pass a confidence filter; detections are not clipped before matching (boxes and labels are both
in the letterboxed input's pixels); each detection, in confidence order, takes the best
unclaimed label at each IoU threshold separately; the precision-recall curve drops to 0 right
after its last recall; AP is computed even when nothing is correct; fitness is mAP@0.5:0.95
alone. Nothing here plots, prints or keeps a time limit (8.4.190's NMS gives up after
2 + 0.05 * batch seconds; ours always finishes, so the figures never depend on the machine).
Torch functions run on their input's device; AP works in numpy, as 8.4.190's does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from yolodiag.metrics import box_iou, nms, precision_recall, smooth, xywh2xyxy

# The validator's call: conf is None in cfg/default.yaml and the validator then takes 0.001 for
# detection; iou and max_det are cfg/default.yaml's; multi_label is fixed True by postprocess.
CONF = 0.001
IOU = 0.7
MAX_DET = 300
MAX_NMS = 30000  # most candidates per image handed to NMS, the most confident kept
MAX_WH = 7680  # px added per class index so that batched NMS keeps classes apart
IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)  # the validator's iouv: mAP@0.5:0.95
END_TO_END_COLUMNS = 6  # x1, y1, x2, y2, score, class: a one-to-one head's rows
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed trapz
_RECALL_GRID = np.linspace(0, 1, 101)  # COCO's 101 recall points
# 0..1 in 1000 steps: the confidence axis of the P, R and F1 curves, the recall axis of prec_values
_CURVE_GRID = np.linspace(0, 1, 1000)

__all__ = ["CONF", "IOU", "MAX_DET", "ap_per_class", "candidates", "compute_ap", "correct",
           "detection_metrics", "fitness", "match_predictions", "non_max_suppression"]


def non_max_suppression(prediction: Tensor | Sequence[Tensor], conf_thres: float = CONF,
                        iou_thres: float = IOU, multi_label: bool = True,
                        agnostic: bool = False, max_det: int = MAX_DET,
                        end2end: bool = False) -> list[Tensor]:
    """8.4.190's non_max_suppression with the validator's defaults (its own defaults are the
    predictor's: conf 0.25, single label).

    `prediction` is the head's decoded eval output (B, 4 + nc, A): xywh in input pixels, then
    class probabilities (the model's `(decoded, raw)` pair is accepted too). A cell is a
    candidate when one class probability exceeds `conf_thres`; with nc > 1 and `multi_label`
    every class above it is one detection, else the best class is. Classes are kept apart
    unless `agnostic`. Returns per image (k, 6) x1, y1, x2, y2, conf, cls, highest confidence
    first, k <= max_det.

    An end-to-end head's output (B, n, 6) of corner boxes, scores and classes (recognised by its
    6 columns, as 8.4.190 does, or forced with `end2end`) is only filtered: rows whose score
    exceeds `conf_thres`, in their order, the first `max_det`, as float32.
    """
    for name, value in (("conf_thres", conf_thres), ("iou_thres", iou_thres)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    if isinstance(prediction, (list, tuple)):
        prediction = prediction[0]
    if end2end or prediction.shape[-1] == END_TO_END_COLUMNS:
        return [rows[rows[:, 4] > conf_thres][:max_det].float() for rows in prediction]
    multi_label = multi_label and prediction.shape[1] - 4 > 1
    return [_nms_image(cells.T, conf_thres, iou_thres, multi_label, agnostic, max_det)
            for cells in prediction]


def candidates(prediction: Tensor, conf: float) -> int:
    """Cells (or an end-to-end head's rows) whose best class probability passes `conf`: what
    NMS starts from."""
    if prediction.shape[-1] == END_TO_END_COLUMNS:
        return int((prediction[..., 4] > conf).sum())
    return int((prediction[:, 4:].amax(1) > conf).sum())


def _nms_image(cells: Tensor, conf_thres: float, iou_thres: float, multi_label: bool,
               agnostic: bool, max_det: int) -> Tensor:
    """One image's (A, 4 + nc) cells -> (k, 6) detections."""
    cells = cells[cells[:, 4:].amax(1) > conf_thres]
    if not len(cells):
        return torch.zeros((0, 6), device=cells.device)  # float32 whatever the input, as 8.4.190
    box, probabilities = xywh2xyxy(cells[:, :4]), cells[:, 4:]
    if multi_label:
        cell, cls = (probabilities > conf_thres).nonzero(as_tuple=True)
        found = torch.cat((box[cell], probabilities[cell, cls, None], cls[:, None].float()), 1)
    else:
        confidence, cls = probabilities.max(1, keepdim=True)
        found = torch.cat((box, confidence, cls.float()), 1)
        found = found[confidence.view(-1) > conf_thres]
    if len(found) > MAX_NMS:
        found = found[found[:, 4].argsort(descending=True)[:MAX_NMS]]
    offsets = found[:, 5:6] * (0 if agnostic else MAX_WH)
    keep = nms(found[:, :4] + offsets, found[:, 4], iou_thres)  # highest score first
    return found[keep[:max_det]]


def match_predictions(pred_classes: Tensor, true_classes: Tensor, iou: Tensor,
                      iouv: Tensor | None = None) -> Tensor:
    """Which detections are true positives at each IoU threshold, by the validator's greedy
    rule (its default; `use_scipy` would match by the Hungarian method instead).

    pred_classes (N,) in descending confidence; true_classes (M,); iou (M, N) labels x
    detections; iouv (T,), default 0.5:0.05:0.95. Returns (N, T) bool on iou's device. An IoU
    across classes counts as 0. Each threshold is matched on its own: walking the detections
    in order, each looks at the labels no earlier detection claimed at that threshold, takes
    the one it overlaps most (the first on a tie) and is correct, claiming it, when that IoU
    reaches the threshold. So a later, better-fitting detection loses a label an earlier one
    claimed (YOLOv5 v7.0 sorts pairs by IoU instead), but may take another label of its class
    (YOLOv7 keeps each detection to its single best label).
    """
    thresholds = (IOU_THRESHOLDS if iouv is None else iouv).to(iou.device)
    overlap = iou * (true_classes[:, None] == pred_classes)
    correct = torch.zeros(len(pred_classes), len(thresholds), dtype=torch.bool,
                          device=iou.device)
    if not overlap.numel():
        return correct
    every_threshold = torch.arange(len(thresholds), device=iou.device)
    unclaimed = torch.ones(len(true_classes), len(thresholds), dtype=torch.bool,
                           device=iou.device)
    # a detection that reaches no threshold with any label neither scores nor claims
    for j in (overlap >= thresholds.min()).any(0).nonzero(as_tuple=True)[0].tolist():
        available = torch.where(unclaimed, overlap[:, j, None], 0.0)  # (M, T)
        label = available.argmax(0)
        hit = available[label, every_threshold] >= thresholds
        correct[j] = hit
        unclaimed[label[hit], every_threshold[hit]] = False
    return correct


def correct(detections: Tensor, labels: Tensor, window: Sequence[float]) -> Tensor:
    """(k, 10) bool: which of one image's detections (k, 6) x1, y1, x2, y2, conf, cls (in NMS
    order) are true positives at IoU 0.5:0.95 against its labels (n, 5) cls, x1, y1, x2, y2.

    `window` (the image's place in its letterbox) is accepted for the engine's contract and not
    used: 8.4.190's validator matches in the letterboxed input's pixels and clips nothing.
    """
    del window
    if not len(detections) or not len(labels):
        return torch.zeros(len(detections), len(IOU_THRESHOLDS), dtype=torch.bool,
                           device=detections.device)
    iou = box_iou(labels[:, 1:5].float(), detections[:, :4].float())  # eps 1e-7, in float32
    return match_predictions(detections[:, 5], labels[:, 0], iou)


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray,
                                                                    np.ndarray]:
    """Area under one precision-recall curve, 8.4.190's way: the curve starts at (0, 1), falls
    to precision 0 at its last recall (at recall 1 when empty) and stays 0 up to recall 1;
    precision is replaced by its envelope (the highest at this or any larger recall), sampled
    at recall 0, 0.01, ..., 1 and integrated with the trapezoidal rule.

    Returns the AP, the envelope and the recall points it is defined on.
    """
    last = recall[-1] if len(recall) else 1.0
    points = np.concatenate(([0.0], recall, [last], [1.0]))
    envelope = np.concatenate(([1.0], precision, [0.0], [0.0]))
    envelope = np.flip(np.maximum.accumulate(np.flip(envelope)))
    return float(_trapezoid(np.interp(_RECALL_GRID, points, envelope), _RECALL_GRID)), \
        envelope, points


def ap_per_class(tp, conf, pred_cls, target_cls, eps: float = 1e-16) -> dict[str, np.ndarray]:
    """8.4.190's ap_per_class, without its plots: its 12 outputs, keyed by their names
    (`classes` for its unique_classes, as yolodiag's YOLOv5 and YOLOv7 call them).

    tp (n, t) bool: detection correct at IoU threshold j; conf (n,); pred_cls (n,); target_cls
    (m,) the class of every label. Per unique label class (`classes`, int): `ap` (classes, t);
    the curves of precision, recall and F1 over confidence at IoU 0.5 (`p_curve`, `r_curve`,
    `f1_curve`, (classes, 1000), sampled at `x`, 0..1); `prec_values` (classes, 1000), the
    precision envelope at recall `x`; `p`, `r`, `f1` (classes,) at the confidence where the
    class-mean F1, smoothed, is highest; `tp` = round(r * labels), `fp` = round(tp / p - tp)
    there. Classes without labels or detections keep zeros. Arrays or CPU tensors are accepted.
    """
    tp, conf, pred_cls, target_cls = (_numpy(a) for a in (tp, conf, pred_cls, target_cls))
    order = np.argsort(-conf)
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes, labels_per_class = np.unique(target_cls, return_counts=True)
    n_classes, x = len(classes), _CURVE_GRID.copy()
    ap = np.zeros((n_classes, tp.shape[1]))
    p_curve, r_curve, prec_values = (np.zeros((n_classes, len(x))) for _ in range(3))
    for ci, c in enumerate(classes):
        mine = pred_cls == c
        if mine.any() and labels_per_class[ci]:
            ap[ci], p_curve[ci], r_curve[ci], prec_values[ci] = _class_curves(
                tp[mine], conf[mine], labels_per_class[ci], eps)
    if not n_classes:
        prec_values = np.zeros((1, len(x)))  # 8.4.190 keeps one empty row to plot
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + eps)
    best = smooth(f1_curve.mean(0), 0.1).argmax() if n_classes else 0  # one confidence for all
    p, r, f1 = p_curve[:, best], r_curve[:, best], f1_curve[:, best]
    tp_count = (r * labels_per_class).round()
    fp_count = (tp_count / (p + eps) - tp_count).round()
    return {"tp": tp_count, "fp": fp_count, "p": p, "r": r, "f1": f1, "ap": ap,
            "classes": classes.astype(int), "p_curve": p_curve, "r_curve": r_curve,
            "f1_curve": f1_curve, "x": x, "prec_values": prec_values}


def _class_curves(tp: np.ndarray, conf: np.ndarray, n_labels: int, eps: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One class's detections (by descending conf) -> AP per threshold, P and R over the
    confidence grid, the IoU-0.5 precision envelope over the recall grid."""
    recall, precision, p_curve, r_curve = precision_recall(tp, conf, n_labels, _CURVE_GRID, eps)
    areas = [compute_ap(recall[:, j], precision[:, j]) for j in range(tp.shape[1])]
    _, envelope, points = areas[0]
    return (np.array([area for area, _, _ in areas]), p_curve, r_curve,
            np.interp(_CURVE_GRID, points, envelope))


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


def detection_metrics(stats: Sequence) -> dict[str, float]:
    """The validator's summary: mean over label classes of P, R, AP@0.5 and AP@0.5:0.95.

    `stats` is (tp, conf, pred_cls, target_cls), each concatenated over all images. AP is
    computed whatever the detections (8.4.190 has no shortcut when none is correct; it gives
    0 then all the same); without labels every figure is 0.
    """
    res = ap_per_class(*stats)
    if not len(res["classes"]):
        return {"mp": 0.0, "mr": 0.0, "map50": 0.0, "map": 0.0}
    return {"mp": float(res["p"].mean()), "mr": float(res["r"].mean()),
            "map50": float(res["ap"][:, 0].mean()), "map": float(res["ap"].mean())}


def fitness(metrics: dict[str, float]) -> float:
    """What the trainer keeps best.pt by: mAP@0.5:0.95 alone (a NaN counts as 0)."""
    return float(np.nan_to_num(metrics["map"]))
