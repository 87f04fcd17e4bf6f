"""Ultralytics 8.4.190's loss and task-aligned assigner against the numbers recorded from it
(yolo11n, yolov8n and the YOLO11 seed recipe at nc=4 with perturbed weights): the loss vector
and its items from the recorded train outputs within 1e-5 relative, the assigner's foreground
point for point, and the loss of our own train forward of the recorded weights within 1e-4.
Measured: items within 3e-7 relative, target scores within 3e-8."""

from __future__ import annotations

import pytest
import torch

from conftest import shared
from yolodiag.build.builder import build
from yolodiag.dialects.ultralytics import loss
from yolodiag.dialects.ultralytics.heads import Detect
from yolodiag.dialects.ultralytics.tal import assign
from yolodiag.spec import parse_spec

FIXTURES = ("yolo11n", "yolov8n", "yolo11n-resnet18")


def _fixture(name: str) -> dict:
    return torch.load(shared("golden", "ultralytics", "numerics", f"{name}.numerics.pt"),
                      weights_only=True)


def _head(recorded: dict) -> Detect:
    widths = [f.shape[1] for f in recorded["train_outputs"]["feats"]]
    head = Detect(recorded["nc"], recorded["detect_reg_max"], False, widths,
                  legacy=recorded["detect_legacy"])
    head.stride.copy_(recorded["detect_stride"])
    return head


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) / b).abs().max())


@pytest.mark.parametrize("name", FIXTURES)
def test_loss_of_the_recorded_outputs(name):
    recorded = _fixture(name)
    assert recorded["hyp"]["box"] == loss.HYP["box"] and recorded["hyp"]["dfl"] == loss.HYP["dfl"]
    assert recorded["loss_item_names"] == [f"{t}_loss" for t in loss.TERMS]
    total, items = loss.compute_loss(_head(recorded), recorded["train_outputs"],
                                     recorded["targets"], loss.HYP)
    assert _relative(items, recorded["loss_items"]) <= 1e-5
    assert _relative(items * 2, recorded["loss"]) <= 1e-5  # the vector: items x batch size
    assert abs(float(total) / float(recorded["loss_total"]) - 1) <= 1e-5
    terms = loss.loss_terms(_head(recorded), recorded["train_outputs"], recorded["targets"],
                            loss.HYP)
    assert _relative(torch.stack(terms), recorded["loss_items"]) <= 1e-5


@pytest.mark.parametrize("name", FIXTURES)
def test_assigner_of_the_recorded_inputs(name):
    recorded = _fixture(name)
    inputs, expected, tal = (recorded["assigner_inputs"], recorded["assigner_outputs"],
                             recorded["tal"])
    got = assign(inputs["pd_scores"], inputs["pd_bboxes"], inputs["anc_points"],
                 inputs["gt_labels"], inputs["gt_bboxes"], inputs["mask_gt"],
                 nc=recorded["nc"], stride_val=tal["stride_val"], topk=tal["topk"],
                 topk2=tal["topk2"], alpha=tal["alpha"], beta=tal["beta"], eps=tal["eps"])
    foreground = expected["fg_mask"]
    assert torch.equal(got.foreground, foreground) and int(foreground.sum()) > 30
    assert torch.equal(got.box_index[foreground], expected["target_gt_idx"][foreground])
    assert torch.equal(got.labels[foreground], expected["target_labels"][foreground])
    assert (got.scores - expected["target_scores"]).abs().max() <= 1e-5
    assert (got.boxes - expected["target_bboxes"]).abs().max() <= 1e-5


@pytest.mark.parametrize("name", FIXTURES)
def test_loss_of_our_own_forward_of_the_recorded_weights(name):
    recorded = _fixture(name)
    built = build(parse_spec(recorded["yaml"], named=recorded["name"]), nc=recorded["nc"])
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in recorded["state_dict"].items()}
    built.model.load_state_dict(state, strict=True)
    net = built.model.eval()
    with torch.no_grad():
        net(recorded["input"])  # the recording's order: eval first (train moves BatchNorm)
    net.train()
    out = net(recorded["input"])
    total, items = loss.compute_loss(built, out, recorded["targets"], loss.HYP)
    assert _relative(items, recorded["loss_items"]) <= 1e-4
    total.backward()
    head = built.model.head
    assert head.cv2[0][-1].weight.grad is not None and head.cv3[0][-1].weight.grad.abs().sum() > 0


def test_no_targets_gives_a_class_loss_only():
    recorded = _fixture("yolo11n")
    empty = recorded["targets"][:0]
    total, items = loss.compute_loss(_head(recorded), recorded["train_outputs"], empty, loss.HYP)
    assert items[0] == 0 and items[2] == 0 and items[1] > 0 and torch.isfinite(total)
    only_first = recorded["targets"][recorded["targets"][:, 0] == 0]
    _, items = loss.compute_loss(_head(recorded), recorded["train_outputs"], only_first,
                                 loss.HYP)
    assert (items > 0).all()


def test_one_to_one_heads_weigh_both_branches():
    recorded = _fixture("yolo11n")
    out = recorded["train_outputs"]
    both = {"one2many": out, "one2one": out}
    head = _head(recorded)
    total, items = loss.compute_loss(head, both, recorded["targets"], loss.HYP)
    many, _ = loss.detection_loss(head, out, recorded["targets"], loss.HYP)
    one, one_items = loss.detection_loss(head, out, recorded["targets"], loss.HYP, topk=7,
                                         topk2=1)
    assert torch.allclose(total, ((many * 0.8 + one * 0.2) * 2).sum())
    assert torch.equal(items, one_items) and not torch.allclose(many, one)


def test_positives_per_level_and_prior_loss_of_a_fresh_model():
    recorded = _fixture("yolo11n")
    torch.manual_seed(0)
    built = build(parse_spec(recorded["yaml"], named=recorded["name"]), nc=4)
    net = built.model.train()
    with torch.no_grad():
        out = net(recorded["input"])
    positives, unmatched = loss.batch_positives(built, out, recorded["targets"], loss.HYP)
    assert len(positives) == 3 and sum(positives) > 0 and 0 <= unmatched <= 4
    grids = [tuple(f.shape[2:]) for f in out["feats"]]
    prior, items = loss.prior_loss(built, grids, recorded["targets"], 2, loss.HYP)
    assert torch.isfinite(prior) and (items > 0).all()
