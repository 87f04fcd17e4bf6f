"""YOLOv7's validation (test.py at commit a207844) against what it recorded: the eval forward of
yolov7-tiny, its NMS at both thresholds, ap_per_class with and without --v5-metric; its greedy
matching by hand, where it parts from YOLOv5 v7.0's; overfit scoring through the dialect."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import shared
from yolodiag.build.builder import build
from yolodiag.dialects import DIALECTS
from yolodiag.metrics import match_predictions as yolov5_match_predictions
from yolodiag.overfit import FitSettings, score
from yolodiag.spec import parse_spec

YOLOV7 = DIALECTS["yolov7"].evaluation
YOLOV5 = DIALECTS["yolov5"].evaluation


@pytest.fixture(scope="module")
def tiny() -> dict:
    return torch.load(shared("golden", "yolov7", "numerics", "yolov7-tiny.numerics.pt"),
                      weights_only=True)


@pytest.fixture(scope="module")
def ap_inputs() -> dict:
    return torch.load(shared("golden", "yolov7", "numerics", "ap_per_class.pt"),
                      weights_only=True)


def test_yolov7_tiny_eval_forward_reproduces_the_recorded_predictions_and_maps(tiny):
    built = build(parse_spec(tiny["yaml"], "yolov7-tiny.yaml", dialect="yolov7"), nc=4)
    built.model.load_state_dict({k: v.float() for k, v in tiny["state_dict"].items()},
                                strict=True)
    built.model.eval()
    with torch.no_grad():
        decoded, maps = built.model(tiny["input"])
    torch.testing.assert_close(decoded, tiny["eval_output"], rtol=1e-6, atol=1e-4)
    assert len(maps) == len(tiny["eval_maps"]) == 3
    for ours, theirs in zip(maps, tiny["eval_maps"]):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("iou", [0.65, 0.6])
def test_nms_reproduces_yolov7_test_py_on_the_recorded_eval_output(tiny, iou):
    ours = YOLOV7.non_max_suppression(tiny["eval_output"], 0.001, iou)
    theirs = tiny[f"nms_conf0.001_iou{iou}"]
    assert [len(d) for d in ours] == [len(d) for d in theirs] == [153, 153]
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=1e-4)  # same order
        assert torch.equal(a[:, 5], b[:, 5])


@pytest.mark.parametrize("variant", ["default", "v5_metric"])
def test_ap_per_class_reproduces_yolov7_on_recorded_inputs(ap_inputs, variant):
    ours = YOLOV7.ap_per_class(ap_inputs["tp"], ap_inputs["conf"], ap_inputs["pred_cls"],
                               ap_inputs["target_cls"], v5_metric=variant == "v5_metric")
    expected = ap_inputs["expected"][variant]
    for key in ("p", "r", "f1", "ap"):
        np.testing.assert_allclose(ours[key], expected[key].numpy(), rtol=0, atol=1e-6,
                                   err_msg=key)
    np.testing.assert_array_equal(ours["classes"], expected["classes"].numpy())


def test_the_two_recall_sentinels_give_different_ap(ap_inputs):
    """The fixture tells the variants apart, so the test above pins the sentinel."""
    default, v5 = (ap_inputs["expected"][k]["ap"] for k in ("default", "v5_metric"))
    assert not torch.allclose(default, v5, atol=1e-3)


def test_compute_ap_ends_the_curve_just_past_the_last_recall_unless_v5_metric():
    recall, precision = np.array([0.5]), np.array([1.0])
    # 101-point interpolation: precision 1 up to recall 0.5, then linearly to 0 at 0.51 or at 1.0
    assert YOLOV7.compute_ap(recall, precision) == pytest.approx(0.505, abs=1e-12)
    assert YOLOV7.compute_ap(recall, precision, v5_metric=True) == pytest.approx(0.75, abs=1e-12)


def _boxes(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# Two class-0 labels side by side; D0 (more confident) covers L0 at IoU 0.53; D1 fits L0
# better (IoU 0.667) and also overlaps L1 (IoU 0.538).
LABELS = _boxes([0, 0, 0, 10, 10], [0, 5, 0, 15, 10])
DETECTIONS = _boxes([0, 0, 10, 5.3, 0.9, 0], [2, 0, 12, 10, 0.8, 0])


def test_greedy_matching_leaves_a_detection_false_whose_best_label_is_taken():
    """test.py: D0 claims L0 (its best, IoU 0.53 > 0.5) and is correct at 0.5 only; D1's best
    label is L0, already claimed, so D1 stays false at every threshold although it overlaps
    L1 above 0.5. YOLOv5 matches again at each threshold: from 0.55 D0's pair drops out and
    D1 takes L0 up to 0.65."""
    ours = YOLOV7.match_predictions(DETECTIONS, LABELS)
    assert ours.tolist() == [[True] + [False] * 9, [False] * 10]
    yolov5 = yolov5_match_predictions(DETECTIONS, LABELS)
    assert yolov5.tolist() == [[True] + [False] * 9, [False, True, True, True] + [False] * 6]


def test_greedy_matching_keeps_the_first_claim_though_a_later_detection_fits_better():
    """D0 (IoU 0.82) is correct up to 0.8 and keeps L0; D1 (IoU 0.93) gets nothing, where YOLOv5
    gives D1 the label at 0.85 and 0.9, once D0's pair is below the threshold."""
    labels = _boxes([0, 0, 0, 10, 10])
    detections = _boxes([0, 0, 10, 8.2, 0.9, 0], [0, 0, 10, 9.3, 0.8, 0])
    assert YOLOV7.match_predictions(detections, labels).tolist() == [
        [True] * 7 + [False] * 3, [False] * 10]
    assert yolov5_match_predictions(detections, labels).tolist() == [
        [True] * 7 + [False] * 3, [False] * 7 + [True, True, False]]


def test_matching_needs_the_same_class_and_iou_strictly_above_each_threshold():
    labels = _boxes([1, 0, 0, 10, 10], [0, 20, 0, 30, 10])
    detections = _boxes([0, 0, 10, 10, 0.9, 0], [20, 0, 30, 7.7, 0.8, 0])
    # D0 lies on the class-1 label: no match; D1 on the class-0 label at IoU 0.77
    assert YOLOV7.match_predictions(detections, labels).tolist() == [
        [False] * 10, [True] * 6 + [False] * 4]
    assert YOLOV7.match_predictions(detections, labels[:0]).tolist() == [[False] * 10] * 2


def test_correct_clips_detections_and_labels_to_the_window_as_scale_coords_does():
    labels = _boxes([0, -10, 0, 10, 10])  # past the left edge: clipped to 0..10
    detections = _boxes([0, 0, 10, 10, 0.9, 0], [0, 0, 20, 10, 0.8, 0])
    window = (0.0, 0.0, 15.0, 100.0)  # D1 clipped to 0..15: IoU 10/15 with the clipped label
    assert YOLOV7.correct(detections, labels, window).tolist() == [
        [True] * 10, [False] * 10]  # D1's best label is D0's: false, not 0.67
    alone = YOLOV7.correct(detections[1:], labels, window)
    assert alone.tolist() == [[True, True, True, True] + [False] * 6]  # 0.667 > 0.5..0.65


def test_a_one_class_model_is_scored_by_objectness_alone():
    decoded = torch.tensor([[[50.0, 50.0, 20.0, 20.0, 0.5, 0.001],
                             [150.0, 50.0, 20.0, 20.0, 0.0005, 0.9]]])
    (found,) = YOLOV7.non_max_suppression(decoded, 0.001, 0.6)
    assert found.tolist() == [[40.0, 40.0, 60.0, 60.0, 0.5, 0.0]]
    (yolov5,) = YOLOV5.non_max_suppression(decoded, 0.001, 0.6)
    assert len(yolov5) == 0  # obj * cls = 0.0005: below conf


def test_multi_label_nms_keeps_every_class_above_conf_and_at_most_300_per_image():
    one = torch.tensor([[[50.0, 50.0, 20.0, 20.0, 0.8, 0.9, 0.5, 0.001]]])
    (found,) = YOLOV7.non_max_suppression(one, 0.001, 0.6)
    assert found[:, 5].tolist() == [0.0, 1.0]  # class 2: 0.8 * 0.001 is below conf
    torch.testing.assert_close(found[:, 4], torch.tensor([0.72, 0.4]))
    xs = torch.arange(400, dtype=torch.float32) * 30  # 400 boxes that overlap nothing
    many = torch.stack([xs, xs, torch.full_like(xs, 10), torch.full_like(xs, 10),
                        torch.linspace(0.9, 0.1, 400), torch.ones(400), torch.zeros(400)], 1)
    (kept,) = YOLOV7.non_max_suppression(many[None], 0.001, 0.6)
    assert len(kept) == 300 and torch.equal(kept[:, 4], many[:300, 4])


def test_fitness_weighs_map_0_5_by_a_tenth_and_map_0_5_0_95_by_nine_tenths():
    assert YOLOV7.fitness({"map50": 0.5, "map": 0.3}) == pytest.approx(0.32)


def test_validation_thresholds_come_from_the_family_unless_given():
    assert (YOLOV7.CONF, YOLOV7.IOU) == (YOLOV5.CONF, YOLOV5.IOU) == (0.001, 0.6)
    settings = FitSettings().for_family(YOLOV7)
    assert (settings.conf, settings.iou) == (0.001, 0.6)
    assert FitSettings(iou=0.65).for_family(YOLOV7).iou == 0.65


def test_overfit_scores_with_the_evaluation_it_is_given():
    """score() runs the family's NMS, matching and AP: the two labels and two detections above,
    as one image, give each family the metrics of its own matching (the default: YOLOv5's)."""
    h = w = 100
    targets = torch.cat((torch.zeros(2, 1), LABELS[:, :1],
                         _xywh(LABELS[:, 1:]) / torch.tensor([w, h, w, h])), 1)
    decoded = torch.cat((_xywh(DETECTIONS[:, :4]), DETECTIONS[:, 4:5], torch.ones(2, 1)), 1)
    window = torch.tensor([[0.0, 0.0, w, h]])
    v7, found = score(decoded[None], targets, window, (h, w), FitSettings(), YOLOV7)
    v5, _ = score(decoded[None], targets, window, (h, w), FitSettings(), YOLOV5)
    assert found == 2
    stats = (torch.tensor([0.9, 0.8]), torch.zeros(2), torch.zeros(2))
    assert v7 == YOLOV7.detection_metrics((YOLOV7.match_predictions(DETECTIONS, LABELS),
                                           *stats))
    assert v5 == YOLOV5.detection_metrics((yolov5_match_predictions(DETECTIONS, LABELS),
                                           *stats))
    assert v7["map"] < v5["map"] and v7["map50"] < v5["map50"]  # matching, then the sentinel
    assert score(decoded[None], targets, window, (h, w), FitSettings())[0] == v5  # default


def _xywh(xyxy: torch.Tensor) -> torch.Tensor:
    return torch.cat(((xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]), 1)
