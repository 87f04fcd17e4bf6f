"""The loss YOLOv5's Detect bias priors imply (YD706's reference): where a fresh model starts."""

from __future__ import annotations

import math

import pytest
import torch

from yolodiag import build_model
from yolodiag.commands import BUNDLED_MODEL
from yolodiag.dialects.yolov5.loss import compute_loss, prior_loss, prior_maps
from yolodiag.synthetic import synthetic_batch


@pytest.fixture(scope="module")
def fresh():
    torch.manual_seed(0)
    built = build_model(BUNDLED_MODEL, nc=3)
    images, targets = synthetic_batch(nc=3, img=256, batch=4, seed=0)
    raw = built.model.train()(images)
    return built, raw, targets


def test_prior_maps_hold_the_objectness_and_class_priors_per_stride(fresh):
    built, raw, _ = fresh
    maps = prior_maps(built, [r.shape[2:4] for r in raw], batch=4)
    assert [m.shape for m in maps] == [r.shape for r in raw]
    for m, stride in zip(maps, built.stride):
        assert m[..., 4].unique().tolist() == [pytest.approx(math.log(8 / (640 / stride) ** 2))]
        assert m[..., 5:].unique().tolist() == [pytest.approx(math.log(0.6 / 2.00001))]
        assert not m[..., :4].any()


def test_a_fresh_model_starts_near_the_prior_loss_and_far_from_it_without_priors(fresh):
    built, raw, targets = fresh
    measured, _ = compute_loss(built, raw, targets)
    expected, _ = prior_loss(built, [r.shape[2:4] for r in raw], targets, batch=4)
    assert abs(measured.item() / expected.item() - 1) < 0.25
    with torch.no_grad():  # what a model whose Detect biases were never initialised gives
        biases = [conv.bias.clone() for conv in built.model.head.m]
        for conv in built.model.head.m:
            conv.bias.zero_()
        unprimed, items = compute_loss(built, built.model(synthetic_batch(3, 256, 4)[0]), targets)
        for conv, bias in zip(built.model.head.m, biases):
            conv.bias.copy_(bias)
    assert unprimed.item() > 3 * expected.item()  # objectness trained from 0.5 everywhere
