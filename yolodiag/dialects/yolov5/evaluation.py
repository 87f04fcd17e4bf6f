"""YOLOv5 v7.0's validation as train.py runs it after each epoch (val.py's `run`): what the
overfit loop scores its batch with.

A thin seam over the shared `yolodiag.metrics`, which holds val.py's NMS, matching and AP
(checked there against recorded YOLOv5 numbers); here only what the training-time call decides:
its thresholds, multi-label NMS, and which boxes are clipped before matching.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from yolodiag.dialects.common.training import objectness_candidates as candidates
from yolodiag.metrics import clip_boxes, detection_metrics, match_predictions
from yolodiag.metrics import non_max_suppression as _yolov5_nms

CONF = 0.001  # val.run's defaults: train.py passes no thresholds
IOU = 0.6

__all__ = ["CONF", "IOU", "candidates", "correct", "detection_metrics", "non_max_suppression"]


def non_max_suppression(decoded: Tensor | Sequence[Tensor], conf_thres: float = CONF,
                        iou_thres: float = IOU) -> list[Tensor]:
    """val.py's call: multi-label NMS, every class whose confidence passes `conf_thres` a
    detection; per image (k, 6) x1, y1, x2, y2, conf, cls."""
    return _yolov5_nms(decoded, conf_thres=conf_thres, iou_thres=iou_thres, multi_label=True)


def correct(detections: Tensor, labels: Tensor, window: Sequence[float]) -> Tensor:
    """(k, 10) bool: which of one image's detections (k, 6) are true positives at IoU
    0.5:0.95 against its labels (n, 5) cls, x1, y1, x2, y2, the detections clipped to `window`
    first (val.py's scale_boxes clips them to the original image). Labels are not clipped:
    they lie inside their image."""
    return match_predictions(clip_boxes(detections, window), labels)
