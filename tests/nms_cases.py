"""The random NMS cases test_metrics compares against torchvision: seeded boxes and scores, so
that tests/golden/record_torchvision_nms.py and the tests draw the same ones."""

from __future__ import annotations

import hashlib

import torch

SIZES = ((1, 1), (10, 1), (300, 1), (2000, 1), (5000, 20))  # (boxes, classes)
IOU_THRESHOLDS = (0.3, 0.45, 0.6)


def random_boxes(n: int, gen: torch.Generator, classes: int = 1) -> torch.Tensor:
    """n xyxy boxes in a 750x750 image, classes kept apart by an offset (as YOLOv5's NMS)."""
    xy = torch.rand(n, 2, generator=gen) * 600
    wh = torch.rand(n, 2, generator=gen) * 150 + 1
    offset = torch.randint(0, classes, (n, 1), generator=gen) * 7680.0
    return torch.cat((xy, xy + wh), 1) + offset


def cases():
    """Per size: (n, classes, boxes, scores with ties, unique scores), drawn from seed 0."""
    gen = torch.Generator().manual_seed(0)
    for n, classes in SIZES:
        boxes = random_boxes(n, gen, classes)
        scores = torch.rand(n, generator=gen)  # 5000 draws hold a tie: same boxes kept
        unique = torch.randperm(n, generator=gen).float() / n  # no tie: same order too
        yield n, classes, boxes, scores, unique


def digest(*tensors: torch.Tensor) -> str:
    """sha256 of the tensors' bytes: the recording and the tests drew the same values."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()
