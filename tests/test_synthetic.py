"""The synthetic batch: deterministic, YOLOv5-valid labels, objects drawn where labelled."""

from __future__ import annotations

import torch

from yolodiag.synthetic import _PALETTE, MAX_ASPECT, MAX_SIDE, MIN_SIDE, synthetic_batch


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
