"""The synthetic batch: deterministic, YOLOv5-valid labels, objects drawn where labelled."""

from __future__ import annotations

import pytest
import torch

from conftest import shared
from yolodiag import commands
from yolodiag.build.builder import build
from yolodiag.commands import BUNDLED_MODEL
from yolodiag.dialects.yolov5.loss import assign
from yolodiag.spec import load_spec
from yolodiag.synthetic import (
    _PALETTE,
    MAX_ASPECT,
    MAX_SIDE,
    MIN_SIDE,
    level_labels,
    synthetic_batch,
)


def test_same_seed_gives_identical_tensors_and_another_seed_does_not():
    a = synthetic_batch(nc=5, img=(128, 160), batch=3, seed=7)
    b = synthetic_batch(nc=5, img=(128, 160), batch=3, seed=7)
    c = synthetic_batch(nc=5, img=(128, 160), batch=3, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_labels_pass_yolov5_label_rules():
    nc = 4
    _, targets = synthetic_batch(nc=nc, img=256, batch=16, seed=0)
    labels = targets[:, 1:]
    assert labels.shape[1] == 5  # class x y w h, per image
    assert ((labels[:, 0] >= 0) & (labels[:, 0] < nc)).all()
    assert labels[:, 0].eq(labels[:, 0].round()).all()
    assert ((labels[:, 1:] >= 0) & (labels[:, 1:] <= 1)).all()
    x, y, w, h = labels[:, 1:].T
    assert ((x - w / 2 >= 0) & (x + w / 2 <= 1) & (y - h / 2 >= 0) & (y + h / 2 <= 1)).all()
    assert set(targets[:, 0].long().tolist()) == set(range(16))  # every image has objects


def test_sizes_span_the_default_anchor_range_with_bounded_aspect():
    _, targets = synthetic_batch(nc=3, img=640, batch=64, seed=1)
    w, h = targets[:, 4], targets[:, 5]
    side = (w * h).sqrt()
    assert side.min() >= MIN_SIDE * 0.99 and side.max() <= MAX_SIDE * 1.01
    assert side.max() / side.min() > 8  # small and large objects both occur
    assert ((w / h) <= MAX_ASPECT * 1.001).all() and ((h / w) <= MAX_ASPECT * 1.001).all()


def test_each_image_shows_its_last_object_in_the_class_colour_at_its_centre():
    images, targets = synthetic_batch(nc=3, img=320, batch=4, seed=3)
    last = {int(row[0]): row for row in targets.tolist()}  # drawn last: nothing covers it
    for image, (_, cls, x, y, _, _) in last.items():
        pixel = images[image, :, int(y * 320), int(x * 320)]
        assert torch.allclose(pixel, _PALETTE[int(cls)])


def test_batch_follows_the_device_argument():
    images, targets = synthetic_batch(nc=2, img=64, batch=1, device=torch.device("cpu"))
    assert images.device.type == targets.device.type == "cpu"


@pytest.mark.parametrize("path", [shared("yamls", "stock", "yolov5s.yaml"), BUNDLED_MODEL,
                                  shared("yamls", "stock", "yolov5n6.yaml")],
                         ids=["yolov5s", "seed", "yolov5n6"])
@pytest.mark.parametrize("seed", range(5))
def test_one_image_of_the_level_batch_gives_every_level_positives(path, seed):
    """overfit's batch at --batch 1 and its default 256x256: YOLOv5's assignment puts positives
    on each level, the seed's stride-4, 8, 16 levels and a P6 model's stride-64 one included."""
    built = build(load_spec(path), device="meta")
    size = commands.OVERFIT_SIZE
    targets = level_labels(built.nc, 1, built.pixel_anchors, size, seed)
    grids = [(size[0] // int(s), size[1] // int(s)) for s in built.stride]
    positives = assign(targets, built.anchors, grids).positives
    assert len(positives) == len(built.stride) >= 3 and all(positives), positives
    assert 3 <= len(targets) <= 2 * len(positives)  # a handful: 1 or 2 per level


def test_level_batch_draws_smaller_objects_over_larger_ones_and_is_deterministic():
    anchors = [[(10, 13), (16, 30)], [(116, 90), (156, 198)]]
    a = synthetic_batch(3, 256, 2, seed=4, anchors=anchors)
    again = synthetic_batch(3, 256, 2, seed=4, anchors=anchors)
    assert all(torch.equal(x, y) for x, y in zip(a, again))
    for image in range(2):
        area = [w * h for i, _, _, _, w, h in a[1].tolist() if i == image]
        assert area == sorted(area, reverse=True)


def test_level_batch_keeps_sides_within_the_ordinary_range():
    tiny, huge = [(0.5, 0.5)], [(5000, 4000)]  # pixels: below 1/40 and beyond the image
    _, targets = synthetic_batch(2, 128, 4, seed=0, anchors=[tiny, huge])
    assert targets[:, 4:6].min() >= MIN_SIDE and targets[:, 4:6].max() <= 0.95
