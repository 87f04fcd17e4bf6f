"""Metrics against YOLOv5 v7.0: NMS and ap_per_class on recorded inputs, matching by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from nms_cases import IOU_THRESHOLDS, cases, digest, random_boxes

from conftest import ROOT, shared
from yolodiag.metrics import (
    _torchvision_nms,
    ap_per_class,
    box_iou,
    compute_ap,
    detection_metrics,
    greedy_nms,
    match_predictions,
    non_max_suppression,
    xywh2xyxy,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def golden(name: str) -> dict:
    return torch.load(shared("golden", "numerics", name), weights_only=True)


def sorted_rows(t: torch.Tensor) -> torch.Tensor:
    """Rows in a fixed order (lexicographic over columns), so ties in conf cannot reorder."""
    for col in reversed(range(t.shape[1])):
        t = t[t[:, col].sort(stable=True).indices]
    return t


@pytest.mark.parametrize("model", ["yolov5n", "yolov5n-resnet18"])
def test_nms_reproduces_yolov5_on_recorded_eval_outputs(model):
    data = golden(f"{model}.numerics.pt")
    ours = non_max_suppression(data["eval_output"], conf_thres=0.001, iou_thres=0.6)
    theirs = data["nms_conf0.001_iou0.6"]
    assert [len(d) for d in ours] == [len(d) for d in theirs]
    for a, b in zip(ours, theirs):
        assert a.shape[1] == 6
        torch.testing.assert_close(sorted_rows(a), sorted_rows(b), rtol=0, atol=1e-4)


def test_nms_accepts_the_models_eval_tuple():
    data = golden("yolov5n.numerics.pt")
    decoded = data["eval_output"]
    pair = non_max_suppression((decoded, []), conf_thres=0.001, iou_thres=0.6)
    alone = non_max_suppression(decoded, conf_thres=0.001, iou_thres=0.6)
    assert all(torch.equal(a, b) for a, b in zip(pair, alone))


def test_ap_per_class_reproduces_yolov5_on_recorded_inputs():
    data = golden("ap_per_class.pt")
    ours = ap_per_class(data["tp"], data["conf"], data["pred_cls"], data["target_cls"])
    expected = data["expected"]
    # The keys are YOLOv5's return order (tp, fp, p, r, f1, ap, classes), one to one. "r" > 1
    # is genuine: the synthetic tp marks more predictions correct than a class has labels.
    for key in ("p", "r", "f1", "ap", "tp", "fp"):
        np.testing.assert_allclose(ours[key], expected[key].numpy(), rtol=0, atol=1e-6,
                                   err_msg=key)
    np.testing.assert_array_equal(ours["classes"], expected["classes"].numpy())


def test_ap_per_class_leaves_classes_without_predictions_at_zero():
    tp = np.ones((2, 10), bool)
    res = ap_per_class(tp, np.array([0.9, 0.8]), np.array([0.0, 0.0]), np.array([0.0, 1.0]))
    assert list(res["classes"]) == [0, 1]
    assert res["ap"][1].sum() == res["p"][1] == res["r"][1] == 0
    assert res["ap"][0, 0] > 0.9


def test_ap_per_class_gives_p_1_r_0_to_a_class_whose_predictions_lie_below_the_chosen_conf():
    # Class 0: a TP at 0.9 and an FP at 0.05, so the class-mean F1 peaks above 0.05; class 1's
    # only prediction (an FP at 0.02) lies below that: np.interp's left=1 gives it P = 1, R = 0.
    tp = np.array([[True] * 10, [False] * 10, [False] * 10])
    res = ap_per_class(tp, np.array([0.9, 0.05, 0.02]), np.array([0.0, 0.0, 1.0]),
                       np.array([0.0, 1.0]))
    assert res["p"][1] == 1.0 and res["r"].tolist() == pytest.approx([1.0, 0.0])
    assert res["tp"].tolist() == [1.0, 0.0] and res["fp"].tolist() == [0.0, 0.0]


def test_compute_ap_of_a_perfect_curve_is_0_995_as_in_yolov5():
    # 101-point interpolation samples recall 1.0 on the closing (1, 0) point: the last 0.01
    # of recall counts half, as in YOLOv5.
    assert compute_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(0.995)
    # half the labels found: precision falls linearly from 1 at recall 0.5 to 0 at recall 1
    assert compute_ap(np.array([0.5]), np.array([1.0])) == pytest.approx(0.75)


def test_detection_metrics_of_perfect_predictions_is_one_for_p_and_r():
    target_cls = np.repeat([0.0, 1.0, 2.0], 2)
    tp = np.ones((6, 10), bool)
    res = detection_metrics((tp, np.linspace(0.9, 0.8, 6), target_cls, target_cls))
    assert res["mp"] == pytest.approx(1.0) and res["mr"] == pytest.approx(1.0)
    # YOLOv5's 101-point AP tops out at 0.995 (see the compute_ap test above)
    assert res["map50"] == pytest.approx(0.995) and res["map"] == pytest.approx(0.995)


def test_detection_metrics_without_true_positives_are_zero():
    tp = np.zeros((3, 10), bool)
    res = detection_metrics((tp, np.array([0.9, 0.5, 0.1]), np.zeros(3), np.zeros(2)))
    assert res == {"mp": 0.0, "mr": 0.0, "map50": 0.0, "map": 0.0}


def test_xywh2xyxy_converts_centres_and_leaves_input_alone():
    xywh = torch.tensor([[10.0, 20.0, 4.0, 6.0]])
    assert xywh2xyxy(xywh).tolist() == [[8.0, 17.0, 12.0, 23.0]]
    assert xywh.tolist() == [[10.0, 20.0, 4.0, 6.0]]
    assert xywh2xyxy(xywh.numpy()).tolist() == [[8.0, 17.0, 12.0, 23.0]]


def test_box_iou_of_half_overlapping_boxes_is_one_third():
    a = torch.tensor([[0.0, 0.0, 2.0, 1.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 1.0], [5.0, 5.0, 6.0, 6.0]])
    iou = box_iou(a, b)
    assert iou.shape == (1, 2)
    assert iou[0, 0].item() == pytest.approx(1 / 3) and iou[0, 1].item() == 0


# Scores fall from A to E. IoU: A-B 0.6, A-D 1/3, B-C 15/185, B-D 37.5/162.5, others 0.
HAND_BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0],    # A
                           [0.0, 2.5, 10.0, 12.5],    # B
                           [0.0, 11.0, 10.0, 21.0],   # C
                           [5.0, 0.0, 15.0, 10.0],    # D
                           [50.0, 50.0, 60.0, 60.0]])  # E
HAND_SCORES = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])


def test_greedy_nms_keeps_the_best_and_drops_boxes_overlapping_it_above_the_threshold():
    assert greedy_nms(HAND_BOXES, HAND_SCORES, 0.5).tolist() == [0, 2, 3, 4]
    assert greedy_nms(HAND_BOXES, HAND_SCORES, 0.3).tolist() == [0, 2, 4]
    assert greedy_nms(HAND_BOXES, HAND_SCORES, 0.7).tolist() == [0, 1, 2, 3, 4]
    # B is gone before C's turn, so C survives a threshold below their IoU
    assert greedy_nms(HAND_BOXES, HAND_SCORES, 0.05).tolist() == [0, 2, 4]


def test_greedy_nms_suppresses_only_strictly_above_the_threshold():
    boxes = torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]])  # IoU 2 / 4 = 0.5
    assert greedy_nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert greedy_nms(boxes, torch.tensor([0.8, 0.9]), 0.49).tolist() == [1]


def test_greedy_nms_of_nothing_is_empty():
    keep = greedy_nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.long


def textbook_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float) -> list[int]:
    """The definition, one box at a time: keep the best, drop what overlaps it, repeat."""
    order = scores.argsort(descending=True).tolist()
    keep = []
    while order:
        best, order = order[0], order[1:]
        keep.append(best)
        iou = box_iou(boxes[best, None], boxes[order], eps=0.0)[0]
        order = [i for i, v in zip(order, iou.tolist()) if not v > iou_thres]
    return keep


def test_greedy_nms_equals_the_textbook_loop_on_random_boxes():
    gen = torch.Generator().manual_seed(0)
    for n, classes in ((1, 1), (7, 1), (300, 1), (700, 5)):
        boxes = random_boxes(n, gen, classes)
        k = n // 10
        boxes[:k, 2:] = boxes[:k, :2]  # some empty boxes: IoU 0 or NaN
        boxes[k:2 * k] = boxes[:k]  # and some duplicates
        scores = torch.rand(n, generator=gen)
        for thr in (0.0, 0.3, 0.45, 0.6, 1.0):
            assert greedy_nms(boxes, scores, thr).tolist() == textbook_nms(boxes, scores, thr)


def test_greedy_nms_finds_overlaps_between_distant_boxes_of_a_long_sweep():
    # 200 boxes sliding right by 0.01: the first suppresses all, also the last, which the
    # x1-sorted sweep (blocks of 128 boxes) meets in another block than the first.
    shift = torch.arange(200.0)[:, None] * 0.01
    boxes = torch.tensor([[0.0, 0.0, 100.0, 100.0]]) + torch.cat((shift, 0 * shift) * 2, 1)
    scores = torch.linspace(1.0, 0.5, 200)
    assert greedy_nms(boxes, scores, 0.5).tolist() == [0]


def test_nms_refuses_thresholds_outside_0_to_1():
    with pytest.raises(ValueError, match="iou_thres"):
        greedy_nms(HAND_BOXES, HAND_SCORES, 1.5)
    with pytest.raises(ValueError, match="conf_thres"):
        non_max_suppression(torch.zeros(1, 3, 7), conf_thres=-0.1)


def test_greedy_nms_equals_torchvision_on_random_boxes():
    """The boxes torchvision.ops.nms keeps (any order where scores tie, the same order where
    none do): as recorded in tests/golden/torchvision_nms.json, and live where torchvision
    works here (which also checks the recording)."""
    recorded = json.loads((ROOT / "tests" / "golden" / "torchvision_nms.json").read_text())
    tv_nms = _torchvision_nms()
    for case, (n, classes, boxes, scores, unique) in zip(recorded["cases"], cases(),
                                                         strict=True):
        assert (case["n"], case["classes"]) == (n, classes)
        assert case["digest"] == digest(boxes, scores, unique), "torch drew other values"
        for thr in IOU_THRESHOLDS:
            kept, in_order = case["kept"][str(thr)], case["kept_in_order"][str(thr)]
            assert sorted(greedy_nms(boxes, scores, thr).tolist()) == kept
            assert greedy_nms(boxes, unique, thr).tolist() == in_order
            if tv_nms is not None:
                assert sorted(tv_nms(boxes, scores, thr).tolist()) == kept
                assert tv_nms(boxes, unique, thr).tolist() == in_order


def decoded_from(rows: list[list[float]]) -> torch.Tensor:
    """(1, n, 5 + nc) decoded predictions from rows of cx, cy, w, h, obj, class scores."""
    return torch.tensor([rows])


def test_nms_suppresses_only_within_a_class_unless_agnostic():
    # Two identical boxes of different classes, one more of class 0 overlapping the first.
    pred = decoded_from([[50, 50, 20, 20, 0.9, 0.9, 0.1],
                         [50, 50, 20, 20, 0.8, 0.1, 0.9],
                         [52, 50, 20, 20, 0.7, 0.9, 0.1]])
    det = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.45)[0]
    assert det[:, 5].tolist() == [0.0, 1.0]
    assert det[:, 4].tolist() == pytest.approx([0.81, 0.72])
    assert det[0, :4].tolist() == [40.0, 40.0, 60.0, 60.0]
    agnostic = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.45, agnostic=True)[0]
    assert agnostic[:, 5].tolist() == [0.0]


def test_nms_thresholds_objectness_and_conf_then_filters_classes_and_caps_max_det():
    pred = decoded_from([[10, 10, 4, 4, 0.2, 1.0, 1.0],     # objectness below 0.25
                         [30, 30, 4, 4, 0.5, 0.4, 0.3],     # conf 0.2: below 0.25
                         [50, 50, 4, 4, 0.9, 0.5, 0.6],     # class 1, conf 0.54
                         [70, 70, 4, 4, 0.8, 0.9, 0.1]])    # class 0, conf 0.72
    det = non_max_suppression(pred)[0]
    assert det[:, 5].tolist() == [0.0, 1.0]
    assert non_max_suppression(pred, classes=[1])[0][:, 5].tolist() == [1.0]
    assert len(non_max_suppression(pred, max_det=1)[0]) == 1


def test_nms_multi_label_keeps_every_class_above_the_threshold():
    pred = decoded_from([[50, 50, 20, 20, 0.9, 0.5, 0.6, 0.1]])
    single = non_max_suppression(pred)[0]
    multi = non_max_suppression(pred, multi_label=True)[0]
    assert single[:, 5].tolist() == [1.0]
    assert sorted(multi[:, 5].tolist()) == [0.0, 1.0]


def test_nms_of_an_image_without_candidates_is_an_empty_6_column_tensor():
    pred = decoded_from([[50, 50, 20, 20, 0.01, 0.5, 0.5]])
    det = non_max_suppression(pred)[0]
    assert det.shape == (0, 6)


LABEL = torch.tensor([[0.0, 0.0, 0.0, 10.0, 10.0]])  # class 0, a 10 x 10 box
BETTER = [0.0, 0.0, 10.0, 9.0, 0.9, 0.0]  # IoU 0.9
WORSE = [0.0, 0.0, 10.0, 7.0, 0.8, 0.0]  # IoU 0.7
IOUV = torch.linspace(0.5, 0.95, 10)


def test_match_predictions_gives_a_label_to_one_detection_only():
    correct = match_predictions(torch.tensor([BETTER, WORSE]), LABEL)
    assert correct.shape == (2, 10) and correct.dtype == torch.bool
    assert correct[0, IOUV < 0.89].all() and not correct[0, IOUV > 0.91].any()
    assert not correct[1].any()


def test_match_predictions_gives_the_label_to_the_first_detection_in_order():
    # YOLOv5 keeps a label's pair with the lowest detection index (detections come from NMS
    # sorted by confidence), not its highest-IoU pair: the 0.7 detection wins at 0.5.
    correct = match_predictions(torch.tensor([WORSE, BETTER]), LABEL)
    assert correct[0, IOUV < 0.69].all() and not correct[0, IOUV > 0.71].any()
    assert correct[1, (IOUV > 0.71) & (IOUV < 0.89)].all() and not correct[1, IOUV < 0.69].any()


def test_match_predictions_ignores_other_classes_and_handles_no_labels():
    other_class = torch.tensor([[0.0, 0.0, 10.0, 10.0, 0.9, 1.0]])
    assert not match_predictions(other_class, LABEL).any()
    assert match_predictions(other_class, torch.zeros(0, 5)).shape == (1, 10)


@pytest.mark.parametrize("device", DEVICES)
def test_nms_and_matching_stay_on_the_input_device(device):
    pred = decoded_from([[50, 50, 20, 20, 0.9, 0.9, 0.1]]).to(device)
    det = non_max_suppression(pred)[0]
    assert det.device.type == device
    labels = torch.tensor([[0.0, 40.0, 40.0, 60.0, 60.0]], device=device)
    correct = match_predictions(det, labels)
    assert correct.device.type == device and correct.all()
