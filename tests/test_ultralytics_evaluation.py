"""Ultralytics 8.4.190's validation against what it recorded: the validator's and the predictor's
NMS on the three numerics fixtures' eval outputs (and on our own eval forward of them),
match_predictions and ap_per_class on their fixtures; by hand, where its matching, AP and
fitness part from YOLOv5 v7.0's and YOLOv7's, and the NMS options. Hand figures marked
"8.4.190:" were read from the real functions on the same inputs. The live oracle (marker
`ultralytics`, needs $ULTRALYTICS_PYTHON) compares seeded random inputs with the real functions,
NMS with both of its backends."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared
from yolodiag.build.builder import build
from yolodiag.dialects import DIALECTS
from yolodiag.dialects.ultralytics import evaluation as ULTRALYTICS
from yolodiag.overfit import FitSettings, score
from yolodiag.spec import parse_spec

YOLOV5, YOLOV7 = DIALECTS["yolov5"].evaluation, DIALECTS["yolov7"].evaluation
FIXTURES = ("yolo11n", "yolov8n", "yolo11n-resnet18")
ORACLE = Path(__file__).parent / "oracle" / "ultralytics_evaluation.py"
BOX_TOLERANCE = 1e-4


def _numerics(name: str) -> dict:
    return torch.load(shared("golden", "ultralytics", "numerics", f"{name}.numerics.pt"),
                      weights_only=True)


def _fixture(name: str) -> dict:
    return torch.load(shared("golden", "ultralytics", "numerics", name), weights_only=True)


def _our_args(recorded: dict) -> dict:
    """The recorded call's arguments less those only other tasks use (nc=0: inferred; rotated)."""
    assert recorded["nc"] == 0 and not recorded["rotated"]
    return {k: v for k, v in recorded.items() if k not in ("nc", "rotated")}


def _assert_same_detections(ours: list, theirs: list) -> None:
    assert [len(d) for d in ours] == [len(d) for d in theirs]
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype
        assert torch.equal(a[:, 5], b[:, 5])  # same classes in the same order
        if len(a):
            assert (a[:, :5] - b[:, :5]).abs().max() <= BOX_TOLERANCE


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("call", ["nms_val", "nms_predict"])
def test_nms_reproduces_the_recorded_validator_and_predictor_calls(name, call):
    recorded = _numerics(name)
    ours = ULTRALYTICS.non_max_suppression(recorded["eval_output"],
                                           **_our_args(recorded[f"{call}_args"]))
    _assert_same_detections(ours, recorded[call])


def test_the_recorded_counts_are_the_research_notes():
    """16 and 13 per image for yolo11n and yolov8n at conf 0.001 (only their stride-32 level
    passes), none for the recipe, none at the predictor's 0.25: the test above compares these."""
    counts = {name: [len(d) for d in _numerics(name)["nms_val"]] for name in FIXTURES}
    assert counts == {"yolo11n": [16, 16], "yolov8n": [13, 13], "yolo11n-resnet18": [0, 0]}


@pytest.mark.parametrize("name", ["yolo11n", "yolov8n"])
def test_nms_on_our_own_eval_forward_gives_the_recorded_detections(name):
    recorded = _numerics(name)
    built = build(parse_spec(recorded["yaml"], named=recorded["name"]), nc=recorded["nc"])
    built.model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                 for k, v in recorded["state_dict"].items()}, strict=True)
    with torch.no_grad():
        output = built.model.eval()(recorded["input"])  # the (decoded, raw) pair
    _assert_same_detections(ULTRALYTICS.non_max_suppression(output), recorded["nms_val"])


def test_validation_defaults_are_the_validators():
    assert (ULTRALYTICS.CONF, ULTRALYTICS.IOU, ULTRALYTICS.MAX_DET) == (0.001, 0.7, 300)
    assert (ULTRALYTICS.MAX_NMS, ULTRALYTICS.MAX_WH) == (30000, 7680)
    assert FitSettings().for_family(ULTRALYTICS).iou == 0.7


def test_match_predictions_reproduces_all_recorded_cases():
    recorded = _fixture("match_predictions.pt")
    assert len(recorded["cases"]) == 6
    for case in recorded["cases"]:
        ours = ULTRALYTICS.match_predictions(case["pred_classes"], case["true_classes"],
                                             case["iou"], recorded["iouv"])
        assert torch.equal(ours, case["expected"])
    assert sum(int(c["expected"].sum()) for c in recorded["cases"]) == 72  # not all false


def test_ap_per_class_reproduces_all_twelve_outputs():
    recorded = _fixture("ap_per_class.pt")
    ours = ULTRALYTICS.ap_per_class(recorded["tp"], recorded["conf"], recorded["pred_cls"],
                                    recorded["target_cls"])
    expected = recorded["expected"]
    assert len(expected) == 12
    for key, value in expected.items():
        mine = ours["classes" if key == "unique_classes" else key]
        assert mine.dtype == value.numpy().dtype, key
        np.testing.assert_allclose(mine, value.numpy(), rtol=0, atol=1e-12, err_msg=key)


def test_compute_ap_drops_to_zero_after_the_last_recall():
    """Precision 1 up to recall 0.5: 8.4.190 gives 0.495 (the step falls at 0.5), YOLOv7 0.505
    (it falls to 0 at 0.51), YOLOv5 0.75 (it falls linearly to recall 1). A perfect class
    scores 0.995, not 1 (8.4.190: the same)."""
    recall, precision = np.array([0.5]), np.array([1.0])
    area, envelope, points = ULTRALYTICS.compute_ap(recall, precision)
    assert area == pytest.approx(0.495, abs=1e-12)
    assert points.tolist() == [0.0, 0.5, 0.5, 1.0] and envelope.tolist() == [1, 1, 0, 0]
    assert YOLOV7.compute_ap(recall, precision) == pytest.approx(0.505, abs=1e-12)
    perfect = ULTRALYTICS.compute_ap(np.array([1.0]), np.array([1.0]))[0]
    assert perfect == pytest.approx(0.995, abs=1e-12)


def _boxes(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# Two class-0 labels side by side; D0 (more confident) covers L0 at IoU 0.53; D1 fits L0
# better (IoU 0.667) and also overlaps L1 (IoU 0.538).
LABELS = _boxes([0, 0, 0, 10, 10], [0, 5, 0, 15, 10])
DETECTIONS = _boxes([0, 0, 10, 5.3, 0.9, 0], [2, 0, 12, 10, 0.8, 0])
WHOLE_IMAGE = (0.0, 0.0, 100.0, 100.0)


def test_each_threshold_is_matched_on_its_own_by_confidence():
    """8.4.190: at 0.5 D0 claims L0 and D1 takes L1 (0.538); from 0.55 D0 reaches nothing,
    so L0 is free for D1 up to 0.65. YOLOv7 leaves D1 false (its one best label is taken),
    YOLOv5 v7.0 gives D1 nothing at 0.5 (pairs sorted by IoU: D1-L0 first, then one per label)."""
    ours = ULTRALYTICS.correct(DETECTIONS, LABELS, WHOLE_IMAGE)
    assert ours.tolist() == [[True] + [False] * 9, [True] * 4 + [False] * 6]
    assert YOLOV7.correct(DETECTIONS, LABELS, WHOLE_IMAGE).tolist()[1] == [False] * 10
    assert YOLOV5.correct(DETECTIONS, LABELS, WHOLE_IMAGE).tolist()[1] == (
        [False, True, True, True] + [False] * 6)


def test_a_label_claimed_at_a_threshold_is_lost_there_to_a_better_later_detection():
    """8.4.190: D0 (IoU 0.82) keeps L0 up to 0.8; D1 (IoU 0.93) gets it at 0.85 and 0.9 only."""
    labels = _boxes([0, 0, 0, 10, 10])
    detections = _boxes([0, 0, 10, 8.2, 0.9, 0], [0, 0, 10, 9.3, 0.8, 0])
    assert ULTRALYTICS.correct(detections, labels, WHOLE_IMAGE).tolist() == [
        [True] * 7 + [False] * 3, [False] * 7 + [True, True, False]]


def test_matching_needs_the_same_class_and_counts_iou_at_the_threshold():
    iou = torch.tensor([[0.5, 0.9], [0.0, 0.0]])
    matched = ULTRALYTICS.match_predictions(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]),
                                            iou)
    assert matched.tolist() == [[True] + [False] * 9, [False] * 10]  # 0.5 >= 0.5; D1 off-class
    assert not ULTRALYTICS.correct(DETECTIONS, LABELS[:0], WHOLE_IMAGE).any()
    assert ULTRALYTICS.correct(DETECTIONS[:0], LABELS, WHOLE_IMAGE).shape == (0, 10)


def test_detections_are_not_clipped_to_the_window_before_matching():
    """The validator matches in the letterboxed input, unclipped: a box 5 px past the left
    edge keeps IoU 0.667 (YOLOv7, which clips to the image, sees 1.0)."""
    labels = _boxes([0, 0, 0, 10, 10])
    detections = _boxes([-5, 0, 10, 10, 0.9, 0])
    ours = ULTRALYTICS.correct(detections, labels, WHOLE_IMAGE)
    assert ours.tolist() == [[True] * 4 + [False] * 6]
    assert YOLOV7.correct(detections, labels, WHOLE_IMAGE).tolist() == [[True] * 10]


def test_detection_metrics_and_fitness_on_a_hand_case():
    """Class 0 found (conf 0.9, correct everywhere), class 1 missed by a wrong box (conf 0.8).
    8.4.190: P = R = 0.5, AP 0.995 and 0, mAP50 = mAP50-95 = 0.4975; fitness = mAP50-95."""
    tp = np.array([[True] * 10, [False] * 10])
    stats = [tp, np.array([0.9, 0.8]), np.array([0.0, 1.0]), np.array([0.0, 1.0])]
    metrics = ULTRALYTICS.detection_metrics(stats)
    assert metrics == pytest.approx({"mp": 0.5, "mr": 0.5, "map50": 0.4975, "map": 0.4975},
                                    abs=1e-12)
    assert set(metrics) == set(YOLOV7.detection_metrics(stats))
    assert ULTRALYTICS.fitness({"mp": 1.0, "mr": 1.0, "map50": 0.9, "map": 0.4}) == 0.4
    assert YOLOV7.fitness({"mp": 1.0, "mr": 1.0, "map50": 0.9, "map": 0.4}) == pytest.approx(0.45)
    assert ULTRALYTICS.fitness({"mp": 0.0, "mr": 0.0, "map50": 0.0, "map": float("nan")}) == 0.0


def test_detection_metrics_are_zero_without_labels_or_without_a_correct_detection():
    none = np.zeros((0, 10), dtype=bool)
    for stats in ([none, np.zeros(0), np.zeros(0), np.array([0.0, 1.0])],
                  [none, np.zeros(0), np.zeros(0), np.zeros(0)],
                  [np.zeros((2, 10), dtype=bool), np.array([0.5, 0.4]), np.array([0.0, 1.0]),
                   np.array([0.0, 1.0])]):
        assert ULTRALYTICS.detection_metrics(stats) == {"mp": 0.0, "mr": 0.0, "map50": 0.0,
                                                        "map": 0.0}


def _decoded(*cells) -> torch.Tensor:
    """Cells (cx, cy, w, h, class probabilities...) -> the head's (1, 4 + nc, A) layout."""
    return torch.tensor(cells, dtype=torch.float32).T[None]


def test_multi_label_gives_one_detection_per_class_above_conf():
    decoded = _decoded([50, 50, 20, 20, 0.9, 0.5, 0.0005], [200, 50, 20, 20, 0.0, 0.0, 0.002])
    (multi,) = ULTRALYTICS.non_max_suppression(decoded)
    assert multi[:, 5].tolist() == [0.0, 1.0, 2.0]  # class 2 of the first cell is below conf
    assert multi[:, 4].tolist() == pytest.approx([0.9, 0.5, 0.002])
    assert multi[0, :4].tolist() == [40.0, 40.0, 60.0, 60.0]
    (single,) = ULTRALYTICS.non_max_suppression(decoded, multi_label=False)
    assert single[:, 5].tolist() == [0.0, 2.0]  # each cell's best class only


def test_classes_are_kept_apart_unless_agnostic():
    decoded = _decoded([50, 50, 20, 20, 0.9, 0.0], [51, 50, 20, 20, 0.0, 0.8])
    assert len(ULTRALYTICS.non_max_suppression(decoded)[0]) == 2
    (agnostic,) = ULTRALYTICS.non_max_suppression(decoded, agnostic=True)
    assert agnostic[:, 4].tolist() == pytest.approx([0.9])  # IoU 0.9 with the better box


def test_at_most_max_det_detections_the_most_confident():
    xs = torch.arange(400, dtype=torch.float32) * 30  # 400 cells whose boxes overlap nothing
    scores = torch.linspace(0.1, 0.9, 400)  # the most confident last
    cells = torch.stack([xs, xs, torch.full_like(xs, 10), torch.full_like(xs, 10), scores], 1)
    (kept,) = ULTRALYTICS.non_max_suppression(cells.T[None])
    assert len(kept) == 300 and torch.equal(kept[:, 4], scores.flip(0)[:300])
    (five,) = ULTRALYTICS.non_max_suppression(cells.T[None], max_det=5)
    assert torch.equal(five[:, 4], scores.flip(0)[:5])


def test_only_the_most_confident_max_nms_candidates_reach_nms(monkeypatch):
    monkeypatch.setattr(ULTRALYTICS, "MAX_NMS", 3)
    xs = torch.arange(5, dtype=torch.float32) * 30
    cells = torch.stack([xs, xs, torch.full_like(xs, 10), torch.full_like(xs, 10),
                         torch.tensor([0.5, 0.9, 0.2, 0.7, 0.6])], 1)
    (kept,) = ULTRALYTICS.non_max_suppression(cells.T[None])
    assert kept[:, 4].tolist() == pytest.approx([0.9, 0.7, 0.6])


def test_end_to_end_rows_are_only_filtered_by_conf_in_their_order():
    rows = torch.tensor([[[0, 0, 10, 10, 0.3, 1], [0, 0, 10, 10, 0.9, 1],
                          [0, 0, 10, 10, 0.0005, 2], [5, 5, 9, 9, 0.8, 0]]]).half()
    (kept,) = ULTRALYTICS.non_max_suppression(rows)
    assert kept.dtype == torch.float32
    assert kept[:, 4].tolist() == pytest.approx([0.3, 0.9, 0.8], abs=1e-3)  # no NMS, no sort
    (first,) = ULTRALYTICS.non_max_suppression(rows, max_det=1)
    assert len(first) == 1


def test_thresholds_outside_0_1_are_refused():
    with pytest.raises(ValueError, match="iou_thres"):
        ULTRALYTICS.non_max_suppression(_decoded([50, 50, 20, 20, 0.9]), iou_thres=1.5)


def test_overfit_scoring_runs_through_the_dialects_functions():
    """The engine's `score` with this module: a cell on the label is correct everywhere
    (AP 0.995 at every threshold), one of another class costs class 1 its AP."""
    decoded = _decoded([32, 32, 16, 16, 0.9, 0.0], [96, 96, 16, 16, 0.0, 0.7])
    targets = torch.tensor([[0, 0, 0.25, 0.25, 0.125, 0.125],
                            [0, 1, 0.25, 0.75, 0.125, 0.125]])
    windows = torch.tensor([[0.0, 0.0, 128.0, 128.0]])
    metrics, count = score(decoded, targets, windows, (128, 128), FitSettings(), ULTRALYTICS)
    assert count == 2
    assert metrics == pytest.approx({"mp": 0.5, "mr": 0.5, "map50": 0.4975, "map": 0.4975})


# Live oracle: the real 8.4.190 functions on seeded random inputs (one subprocess).

def _oracle_request() -> dict:
    gen = torch.Generator().manual_seed(0)

    def cells(batch: int, nc: int, n: int) -> torch.Tensor:
        xy = torch.rand(batch, 2, n, generator=gen) * 640
        wh = torch.rand(batch, 2, n, generator=gen) * 150 + 4
        return torch.cat((xy, wh, torch.rand(batch, nc, n, generator=gen) ** 4), 1)

    five, one = cells(2, 5, 600), cells(2, 1, 500)
    rows = torch.cat((cells(2, 2, 300)[:, :4].transpose(1, 2),
                      torch.rand(2, 300, 1, generator=gen),
                      torch.randint(0, 3, (2, 300, 1), generator=gen).float()), -1)
    nms = [{"prediction": five, "kwargs": kw} for kw in (
        {"conf_thres": 0.001, "iou_thres": 0.7, "multi_label": True, "max_det": 300},
        {"conf_thres": 0.25, "iou_thres": 0.7},
        {"conf_thres": 0.01, "iou_thres": 0.45, "multi_label": True, "agnostic": True},
        {"conf_thres": 0.5, "iou_thres": 0.3, "max_det": 20})]
    nms += [{"prediction": one, "kwargs": {"conf_thres": 0.001, "iou_thres": 0.7,
                                           "multi_label": True}},
            {"prediction": rows, "kwargs": {"conf_thres": 0.25, "max_det": 100}}]
    match = []
    for labels, detections in ((1, 8), (6, 30), (12, 60), (3, 0)):
        iou = torch.rand(labels, detections, generator=gen)
        iou[iou < 0.4] = 0.0  # zeros and pairs that tie at 0.0 as in real images
        match.append({"iou": iou.round(decimals=2),  # ties between labels too
                      "true_classes": torch.randint(0, 3, (labels,), generator=gen).float(),
                      "pred_classes": torch.randint(0, 3, (detections,), generator=gen).float()})
    ap = []
    for n, labels, classes in ((500, 80, 6), (30, 10, 3), (0, 5, 2), (20, 0, 2)):
        ap.append({"tp": torch.rand(n, 10, generator=gen) < 0.3,
                   "conf": torch.rand(n, generator=gen).double(),
                   "pred_cls": torch.randint(0, classes + 1, (n,), generator=gen).double(),
                   "target_cls": torch.randint(0, classes, (labels,), generator=gen).double()})
    return {"nms": nms, "match": match, "ap": ap}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory) -> tuple[dict, dict]:
    python = os.environ.get("ULTRALYTICS_PYTHON")
    if not python:
        pytest.skip("needs $ULTRALYTICS_PYTHON (an interpreter with ultralytics==8.4.190)")
    folder = tmp_path_factory.mktemp("ultralytics_evaluation")
    request = _oracle_request()
    torch.save(request, folder / "request.pt")
    done = subprocess.run([python, "-W", "ignore", str(ORACLE), "request.pt", "out.pt"],
                          cwd=folder, env={**os.environ, "YOLO_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return request, torch.load(folder / "out.pt", weights_only=True)


@pytest.mark.ultralytics
def test_nms_matches_the_real_function_with_both_backends(oracle):
    request, results = oracle
    for case, theirs in zip(request["nms"], results["nms"]):
        ours = ULTRALYTICS.non_max_suppression(case["prediction"], **{
            "multi_label": False, **case["kwargs"]})  # 8.4.190's own default is single-label
        for backend in ("torch", "torchvision"):
            _assert_same_detections(ours, theirs[backend])
    assert sum(len(d) for d in results["nms"][0]["torch"]) == 600  # max_det reached


@pytest.mark.ultralytics
def test_matching_and_ap_match_the_real_functions(oracle):
    request, results = oracle
    for case, theirs in zip(request["match"], results["match"]):
        ours = ULTRALYTICS.match_predictions(case["pred_classes"], case["true_classes"],
                                             case["iou"])
        assert torch.equal(ours, theirs)
    for case, theirs in zip(request["ap"], results["ap"]):
        ours = ULTRALYTICS.ap_per_class(case["tp"], case["conf"], case["pred_cls"],
                                        case["target_cls"])
        for key, value in theirs.items():
            mine = ours["classes" if key == "unique_classes" else key]
            np.testing.assert_allclose(mine, value.numpy(), rtol=0, atol=1e-12, err_msg=key)
