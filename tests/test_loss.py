"""YOLOv5's loss and target assignment: against numbers recorded from YOLOv5 v7.0
(../shared/golden), hand-made assignments whose positives can be counted on paper, and the
documented effects of the hyperparameters. Optionally against the live yolov5 package (marker
`yolov5`)."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import NUMERICS, TINY, oracle_python, recorded_numerics, shared
from yolodiag.build.builder import build
from yolodiag.dialects.yolov5.loss import (
    HYP,
    assign,
    ciou,
    compute_loss,
    objectness_balance,
    train_hyp,
)
from yolodiag.spec import load_spec, parse_spec

HERE = Path(__file__).parent
@pytest.fixture(scope="module", params=NUMERICS)
def numerics(request):
    return recorded_numerics(request.param)


def _loss(built, recorded, **hyp):
    return compute_loss(built, recorded["train_outputs"], recorded["targets"],
                        {**recorded["hyp"], **hyp})


def _rel(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs() / theirs.abs()).max().item()


# --- against the recorded YOLOv5 numbers ---------------------------------------------------

def test_loss_and_items_match_yolov5_within_1e_5_relative(numerics):
    recorded, built = numerics
    loss, items = _loss(built, recorded)
    assert loss.shape == (1,) and items.shape == (3,)
    assert _rel(loss, recorded["loss"]) < 1e-5
    assert _rel(items, recorded["loss_items"]) < 1e-5


def test_detect_head_and_bare_anchors_give_the_same_loss_as_the_built_model(numerics):
    recorded, built = numerics
    loss, _ = _loss(built, recorded)
    targets, maps = recorded["targets"], recorded["train_outputs"]
    by_head, _ = compute_loss(built.model.head, maps, targets, recorded["hyp"])
    by_anchors, _ = compute_loss(built.anchors, maps, targets, recorded["hyp"])
    assert torch.equal(by_head, loss) and torch.equal(by_anchors, loss)


def test_loss_backpropagates_into_every_level(numerics):
    recorded, built = numerics
    maps = [m.clone().requires_grad_(True) for m in recorded["train_outputs"]]
    loss, items = compute_loss(built, maps, recorded["targets"], recorded["hyp"])
    loss.backward()
    assert not items.requires_grad
    for m in maps:
        assert torch.isfinite(m.grad).all()
        assert m.grad[..., 4].abs().sum() > 0  # objectness learns on every cell of every level


def test_class_logits_learn_only_on_levels_with_positives(numerics):
    recorded, built = numerics
    maps = [m.clone().requires_grad_(True) for m in recorded["train_outputs"]]
    loss, _ = compute_loss(built, maps, recorded["targets"], recorded["hyp"])
    loss.backward()
    positives = assign(recorded["targets"], built.anchors,
                       [m.shape[2:4] for m in maps]).positives
    assert 0 in positives and max(positives) > 0  # the recorded batch has both kinds of level
    for n, m in zip(positives, maps):
        assert (m.grad[..., 5:].abs().sum() > 0) == (n > 0)
        assert (m.grad[..., :4].abs().sum() > 0) == (n > 0)


def test_a_box_no_anchor_can_take_is_reported_and_changes_nothing(numerics):
    recorded, built = numerics
    shapes = [m.shape[2:4] for m in recorded["train_outputs"]]
    tiny = torch.tensor([[0.0, 1.0, 0.5, 0.5, 0.001, 0.001]])  # far below every anchor / 4
    targets = torch.cat((recorded["targets"], tiny))
    before = assign(recorded["targets"], built.anchors, shapes)
    after = assign(targets, built.anchors, shapes)
    assert before.unmatched == ()
    assert after.unmatched == (len(targets) - 1,)
    assert after.positives == before.positives
    loss, items = compute_loss(built, recorded["train_outputs"], targets, recorded["hyp"])
    expected, expected_items = _loss(built, recorded)
    assert torch.equal(loss, expected) and torch.equal(items, expected_items)


def test_focal_gamma_lowers_objectness_and_class_loss_and_keeps_box(numerics):
    recorded, built = numerics
    _, plain = _loss(built, recorded)
    _, focal = _loss(built, recorded, fl_gamma=1.5)
    assert focal[0] == plain[0]
    assert focal[1] < plain[1] and focal[2] < plain[2]


def test_no_targets_leave_only_objectness():
    built = build(parse_spec(TINY), nc=2)
    maps = [torch.randn(2, 3, 8, 8, 7), torch.randn(2, 3, 4, 4, 7)]
    loss, items = compute_loss(built, maps, torch.zeros(0, 6))
    assert items[0] == items[2] == 0 and items[1] > 0
    assert torch.allclose(loss, items.sum() * 2)


# --- hand-made assignments: one level, 8x8 cells, one 2x2 anchor -----------------------------

ANCHOR = torch.tensor([[[2.0, 2.0]]])
GRID = [(8, 8)]


def _box(x: float, y: float, w: float = 2.0, h: float = 2.0, image: int = 0, cls: int = 0):
    """A target row from a centre and size in cells of the 8x8 grid."""
    return [image, cls, x / 8, y / 8, w / 8, h / 8]


def _cells(assignment) -> list[tuple[int, int]]:
    level = assignment.levels[0]
    return list(zip(level.gi.tolist(), level.gj.tolist()))


def test_box_centred_in_its_cell_gets_one_cell():
    a = assign(torch.tensor([_box(3.5, 4.5)]), ANCHOR, GRID)
    assert a.positives == (1,) and _cells(a) == [(3, 4)]
    assert a.levels[0].box.tolist() == [[0.5, 0.5, 2.0, 2.0]]


def test_box_near_top_left_corner_gets_its_cell_then_left_then_up():
    a = assign(torch.tensor([_box(3.25, 4.25)]), ANCHOR, GRID)
    assert a.positives == (3,) and _cells(a) == [(3, 4), (2, 4), (3, 3)]
    # Offsets are taken from each neighbour's own corner: they reach into [-0.5, 1.5].
    assert a.levels[0].box[:, :2].tolist() == [[0.25, 0.25], [1.25, 0.25], [0.25, 1.25]]


def test_box_near_bottom_right_corner_gets_right_then_down():
    a = assign(torch.tensor([_box(3.75, 4.75)]), ANCHOR, GRID)
    assert _cells(a) == [(3, 4), (4, 4), (3, 5)]


def test_box_in_the_grid_corner_gets_no_neighbour_outside_the_grid():
    a = assign(torch.tensor([_box(0.25, 0.25), _box(7.75, 7.75)]), ANCHOR, GRID)
    assert _cells(a) == [(0, 0), (7, 7)]


def test_positives_are_ordered_centres_first_then_left_up_right_down():
    rows = [_box(3.25, 4.5), _box(5.5, 5.75), _box(1.75, 6.25)]
    a = assign(torch.tensor(rows), ANCHOR, GRID)
    centres = [(3, 4), (5, 5), (1, 6)]
    assert _cells(a) == centres + [(2, 4), (1, 5), (2, 6), (5, 6)]


def test_positives_are_anchor_major_within_a_group_and_counted_per_anchor():
    anchors = torch.tensor([[[2.0, 2.0], [3.0, 3.0], [40.0, 40.0]]])
    a = assign(torch.tensor([_box(3.5, 4.5, image=0), _box(5.5, 1.5, image=1)]), anchors, GRID)
    level = a.levels[0]
    assert level.anchor.tolist() == [0, 0, 1, 1]
    assert level.image.tolist() == [0, 1, 0, 1]
    assert a.positives_per_anchor == ((2, 2, 0),)
    assert level.anchor_wh.tolist() == [[2.0, 2.0]] * 2 + [[3.0, 3.0]] * 2


def test_box_centred_on_the_far_border_is_taken_twice_by_the_last_cell():
    # Centre cell 8 does not exist and is clamped to 7; the left neighbour is cell 7 as well.
    a = assign(torch.tensor([_box(8.0, 3.5)]), ANCHOR, GRID)
    assert _cells(a) == [(7, 3), (7, 3)]
    assert a.levels[0].box[:, :2].tolist() == [[1.0, 0.5]] * 2  # from the clamped cell


def test_side_ratio_equal_to_anchor_t_does_not_match():
    # 0.5 / 2 and 8 / 2 are exactly 1/4 and 4: both refused; just inside is taken.
    rows = [_box(3.5, 4.5, w=0.5), _box(3.5, 4.5, h=8.0), _box(3.5, 4.5, w=0.51, h=7.9)]
    a = assign(torch.tensor(rows), ANCHOR, GRID)
    assert a.unmatched == (0, 1)
    assert a.positives == (1,)
    assert a.unmatched == assign(torch.tensor(rows), ANCHOR, GRID, anchor_t=4.0).unmatched
    assert assign(torch.tensor(rows), ANCHOR, GRID, anchor_t=4.1).unmatched == ()


def test_later_write_wins_when_two_positives_share_a_cell():
    # Box 1's centre cell (2, 4) is also box 0's left neighbour, which comes later.
    rows = torch.tensor([_box(3.25, 4.5), _box(2.5, 4.5, w=1.0, h=1.0)])
    maps = [torch.zeros(1, 1, 8, 8, 6)]
    maps[0][..., 4] = 1.0  # at logit 0 the objectness BCE would not depend on its target
    loss, _ = compute_loss(ANCHOR, maps, rows, {"box": 0.0, "cls": 0.0, "obj": 1.0})
    # Box logits 0: every prediction is a 2x2-cell box at offset (0.5, 0.5) in its cell.
    pred = torch.tensor([[0.5, 0.5, 2.0, 2.0]])
    targets = {"0c": [0.25, 0.5, 2.0, 2.0], "0l": [1.25, 0.5, 2.0, 2.0], "1c": [0.5, 0.5, 1.0, 1.0]}
    iou = {name: ciou(pred, torch.tensor([b])).clamp(0).item() for name, b in targets.items()}
    assert iou["0l"] != iou["1c"]
    tobj = torch.zeros(1, 1, 8, 8)
    tobj[0, 0, 4, 3], tobj[0, 0, 4, 2] = iou["0c"], iou["0l"]
    expected = F.binary_cross_entropy_with_logits(torch.ones(1, 1, 8, 8), tobj)
    torch.testing.assert_close(loss, expected[None] * objectness_balance(1)[0], rtol=1e-6, atol=0)


# --- hyperparameters ------------------------------------------------------------------------

def test_label_smoothing_raises_class_loss_of_confident_correct_scores_only():
    rows = torch.tensor([_box(3.5, 4.5, cls=1), _box(5.25, 2.75, cls=0)])
    maps = [torch.zeros(1, 1, 8, 8, 8)]
    level = assign(rows, ANCHOR, GRID).levels[0]
    maps[0][..., 5:] = -8.0  # confident "not this class" everywhere...
    maps[0][level.image, level.anchor, level.gj, level.gi, 5 + level.cls] = 8.0  # ...but the true
    _, plain = compute_loss(ANCHOR, maps, rows)
    _, smooth = compute_loss(ANCHOR, maps, rows, {"label_smoothing": 0.2})
    assert smooth[2] > plain[2]
    assert torch.equal(smooth[:2], plain[:2])


def test_label_smoothing_moves_class_targets_half_eps_towards_the_middle():
    maps = [torch.zeros(1, 1, 8, 8, 7)]
    maps[0][0, 0, 4, 3, 5:] = torch.tensor([2.0, -1.0])
    _, items = compute_loss(ANCHOR, maps, torch.tensor([_box(3.5, 4.5)]),
                            {"label_smoothing": 0.1, "cls": 1.0})
    expected = F.binary_cross_entropy_with_logits(torch.tensor([2.0, -1.0]),
                                                  torch.tensor([0.95, 0.05]))
    torch.testing.assert_close(items[2], expected, rtol=1e-6, atol=0)


def test_focal_bce_weighs_each_element_by_alpha_and_one_minus_p_t_to_the_gamma():
    from yolodiag.dialects.yolov5.loss import bce

    # Logit 0 and ln 3: p = 1/2 and 3/4. Plain BCE: ln 2 and ln 4/3 (y = 1), ln 4 (y = 0);
    # alpha 0.25 where y = 1, 0.75 where y = 0.
    logits = torch.tensor([0.0, math.log(3), math.log(3)])
    got = bce(logits, torch.tensor([1.0, 1.0, 0.0]), pos_weight=1.0, gamma=2.0)
    expected = (math.log(2) * 0.25 * 0.5 ** 2 + math.log(4 / 3) * 0.25 * 0.25 ** 2
                + math.log(4) * 0.75 * 0.75 ** 2) / 3
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_ciou_aspect_weight_alpha_carries_no_gradient():
    # Concentric boxes: CIoU = iou - alpha * v, with alpha held constant in the gradient.
    w = torch.tensor(1.0, requires_grad=True)
    ours = ciou(torch.stack((torch.tensor(0.0), torch.tensor(0.0), w, torch.tensor(1.0)))[None],
                torch.tensor([[0.0, 0.0, 2.0, 1.0]]), eps=0.0)
    (grad,) = torch.autograd.grad(ours.sum(), w)
    w2 = torch.tensor(1.0, requires_grad=True)
    iou = w2 / 2.0  # box 1 inside box 2
    v = 4 / math.pi ** 2 * (math.atan(2.0) - torch.atan(w2)) ** 2
    alpha = (v / (v - iou + 1)).detach()
    (expected,) = torch.autograd.grad(iou - alpha * v, w2)
    assert grad.item() == pytest.approx(expected.item(), rel=1e-6)


def test_single_class_models_have_no_class_loss():
    maps = [torch.randn(1, 1, 8, 8, 6)]
    _, items = compute_loss(ANCHOR, maps, torch.tensor([_box(3.5, 4.5)]))
    assert items[2] == 0 and items[0] > 0


def test_defaults_are_scratch_low_and_train_hyp_scales_as_train_py():
    assert HYP == {"box": 0.05, "cls": 0.5, "cls_pw": 1.0, "obj": 1.0, "obj_pw": 1.0,
                   "anchor_t": 4.0, "fl_gamma": 0.0, "label_smoothing": 0.0}
    assert train_hyp(HYP, nc=80, imgsz=640, nl=3) == HYP
    scaled = train_hyp(HYP, nc=4, imgsz=320, nl=4)
    assert scaled["box"] == pytest.approx(0.05 * 0.75)
    assert scaled["cls"] == pytest.approx(0.5 * 4 / 80 * 0.75)
    assert scaled["obj"] == pytest.approx(0.25 * 0.75)
    assert scaled["anchor_t"] == HYP["anchor_t"]


def test_objectness_balance_follows_yolov5s_table():
    assert objectness_balance(3) == (4.0, 1.0, 0.4)
    assert objectness_balance(4) == (4.0, 1.0, 0.25, 0.06)
    assert objectness_balance(2) == (4.0, 1.0)
    with pytest.raises(ValueError, match="at most 5"):
        objectness_balance(6)


def test_raw_maps_that_disagree_with_the_head_are_refused():
    built = build(parse_spec(TINY), nc=2)
    with pytest.raises(ValueError, match="2 anchor levels"):
        compute_loss(built, [torch.zeros(1, 3, 8, 8, 7)], torch.zeros(0, 6))
    with pytest.raises(ValueError, match="expected"):
        compute_loss(built, [torch.zeros(1, 3, 8, 8, 9)] * 2, torch.zeros(0, 6))


# --- the live oracle ------------------------------------------------------------------------

def _dense_cases(built, nc: int) -> list[dict]:
    """Crowded random boxes, a quarter on exact cell edges: many cells are claimed twice."""
    g = torch.Generator().manual_seed(0)
    cases = []
    for img, bs, nt, hyp in [(128, 2, 200, {}), (64, 4, 300, {"fl_gamma": 1.5}),
                             (96, 2, 100, {"label_smoothing": 0.1, "cls_pw": 2.0,
                                           "obj_pw": 0.5, "anchor_t": 2.5})]:
        maps = [torch.randn(bs, 3, img // int(s), img // int(s), 5 + nc, generator=g)
                for s in built.stride]
        t = torch.rand(nt, 6, generator=g)
        t[:, 0] = torch.randint(0, bs, (nt,), generator=g)
        t[:, 1] = torch.randint(0, nc, (nt,), generator=g)
        t[:, 4:] = t[:, 4:] * 0.5 + 0.01
        t[: nt // 4, 2:4] = (t[: nt // 4, 2:4] * 8).round() / 8
        cases.append({"hyp": {**HYP, **hyp}, "maps": maps, "targets": t})
    return cases


@pytest.mark.yolov5
@pytest.mark.parametrize("name", ["yolov5n", "yolov5-p2", "yolov5-p34"])
def test_crowded_targets_match_live_yolov5_loss_and_gradients(name, tmp_path):
    python = oracle_python()
    yaml = shared("yamls", "stock", f"{name}.yaml")
    built = build(load_spec(yaml), nc=4, device="meta")
    cases = _dense_cases(built, 4)
    torch.save({"yaml": str(yaml), "nc": 4, "cases": cases}, tmp_path / "in.pt")
    subprocess.run([python, "-W", "ignore", str(HERE / "oracle" / "yolov5_loss.py"),
                    str(tmp_path / "in.pt"), str(tmp_path / "out.pt")], check=True,
                   capture_output=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    theirs = torch.load(tmp_path / "out.pt", weights_only=True)
    for case, their in zip(cases, theirs):
        maps = [m.clone().requires_grad_(True) for m in case["maps"]]
        loss, items = compute_loss(built, maps, case["targets"], case["hyp"])
        loss.backward()
        torch.testing.assert_close(items, their["items"], rtol=1e-5, atol=0)
        for ours, grad in zip(maps, their["grads"]):
            torch.testing.assert_close(ours.grad, grad, rtol=1e-4, atol=1e-9)
