"""A deterministic synthetic batch: filled shapes of nc classes and their YOLO labels.

`gradflow` needs a batch without any data on disk, and YD404 needs targets of ordinary sizes to
run YOLOv5's assignment on: `synthetic_batch`. `overfit` needs a batch that tests the whole
head, even at --batch 1: given the anchors, `synthetic_batch` sizes its objects after each
level's (`level_labels`); without them its objects span the sizes YOLOv5's default anchors
were designed for (about 10 to 373 pixels at 640, scaled to the image), with aspect ratios up
to 2.5, so that a sound model's anchors match every one of them. Each class has its own shape
and colour. The same seed gives identical tensors on every machine: everything is drawn from
one torch.Generator on the CPU, then moved to the requested device. Nothing here reads files
or touches a model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Object sides, as fractions of the image side: YOLOv5's default anchors span 10-373 px at 640.
MIN_SIDE, MAX_SIDE = 16 / 640, 384 / 640
MAX_ASPECT = 2.5  # width/height within [1/2.5, 2.5]: every default anchor row matches it
OBJECTS_PER_IMAGE = (1, 4)
OBJECTS_PER_LEVEL = (1, 2)  # level_labels: per image and level
ANCHOR_SCALE = 2.0  # level_labels: an object is its anchor times [1/2, 2], inside anchor_t = 4
_SHAPES = ("rectangle", "ellipse", "triangle")
_PALETTE = torch.tensor([[0.90, 0.20, 0.20], [0.20, 0.75, 0.25], [0.20, 0.35, 0.90],
                         [0.95, 0.80, 0.15], [0.70, 0.25, 0.80], [0.10, 0.80, 0.85]])


def synthetic_labels(nc: int, batch: int, seed: int = 0,
                     sides: tuple[float, float] = (MIN_SIDE, MAX_SIDE)) -> Tensor:
    """Targets (n, 6): image index, class, x, y, w, h, normalised to [0, 1], as YOLOv5's collate
    gives them. Sizes log-uniform in `sides` (fractions of the image side), centres keep the
    box in the image."""
    low, high = sides
    g = torch.Generator().manual_seed(seed)
    rows = []
    for image in range(batch):
        count = int(torch.randint(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1, (1,),
                                  generator=g))
        for _ in range(count):
            cls = int(torch.randint(0, nc, (1,), generator=g))
            side = math.exp(math.log(low) + float(torch.rand(1, generator=g))
                            * (math.log(high) - math.log(low)))
            aspect = math.exp((float(torch.rand(1, generator=g)) * 2 - 1) * math.log(MAX_ASPECT))
            w = min(side * math.sqrt(aspect), 0.95)
            h = min(side / math.sqrt(aspect), 0.95)
            x = w / 2 + float(torch.rand(1, generator=g)) * (1 - w)
            y = h / 2 + float(torch.rand(1, generator=g)) * (1 - h)
            rows.append([image, cls, x, y, w, h])
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


def level_labels(nc: int, batch: int, anchors: list[list[tuple[float, float]]],
                 img: tuple[int, int], seed: int = 0) -> Tensor:
    """Targets (n, 6) as `synthetic_labels`, sized so that every level of the head gets
    positives: per image and level 1 or 2 objects, each one of that level's anchors (pixels,
    drawn at random) times a factor log-uniform in [1/2, 2], which YOLOv5's assignment matches
    (side ratio under anchor_t = 4). Sides stay within the ordinary object range (MIN_SIDE of
    the image at least, 0.95 of it at most): a level whose anchors no ordinary object fits
    gets none, as it would from data. Larger objects come first so that smaller ones are
    drawn over them and stay whole."""
    h, w = img
    g = torch.Generator().manual_seed(seed)
    rows = []
    for image in range(batch):
        boxes = []
        for level in anchors:
            count = int(torch.randint(OBJECTS_PER_LEVEL[0], OBJECTS_PER_LEVEL[1] + 1, (1,),
                                      generator=g))
            for _ in range(count):
                aw, ah = level[int(torch.randint(0, len(level), (1,), generator=g))]
                scale = ANCHOR_SCALE ** (float(torch.rand(1, generator=g)) * 2 - 1)
                bw = min(max(aw * scale / w, MIN_SIDE), 0.95)
                bh = min(max(ah * scale / h, MIN_SIDE), 0.95)
                x = bw / 2 + float(torch.rand(1, generator=g)) * (1 - bw)
                y = bh / 2 + float(torch.rand(1, generator=g)) * (1 - bh)
                cls = int(torch.randint(0, nc, (1,), generator=g))
                boxes.append([image, cls, x, y, bw, bh])
        rows += sorted(boxes, key=lambda b: -b[4] * b[5])
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


def render_images(targets: Tensor, batch: int, img: tuple[int, int], seed: int = 0) -> Tensor:
    """Images (batch, 3, h, w) in [0, 1]: a grey, slightly noisy background with each target
    drawn as its class's filled shape (class k: shape k mod 3, colour k mod 6, darker for
    k >= 6 so that up to 18 classes differ in shape, colour or brightness)."""
    h, w = img
    g = torch.Generator().manual_seed(seed + 1)
    images = 0.5 + 0.05 * torch.randn(batch, 3, h, w, generator=g)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5).view(h, 1) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5).view(1, w) / w
    for image, cls, x, y, bw, bh in targets.tolist():
        mask = _shape_mask(_SHAPES[int(cls) % 3], xs, ys, x, y, bw, bh)
        colour = _PALETTE[int(cls) % len(_PALETTE)] * (0.6 if int(cls) >= 6 else 1.0)
        images[int(image)][:, mask] = colour.view(3, 1)
    return images.clamp_(0, 1)


def _shape_mask(shape: str, xs: Tensor, ys: Tensor, x: float, y: float, w: float,
                h: float) -> Tensor:
    dx, dy = (xs - x) / (w / 2), (ys - y) / (h / 2)
    if shape == "rectangle":
        return (dx.abs() <= 1) & (dy.abs() <= 1)
    if shape == "ellipse":
        return dx**2 + dy**2 <= 1
    depth = (dy + 1) / 2  # 0 at the top edge, 1 at the bottom: the triangle widens downwards
    return (dy.abs() <= 1) & (dx.abs() <= depth)


def synthetic_batch(nc: int, img: int | tuple[int, int], batch: int, seed: int = 0,
                    device: str | torch.device = "cpu",
                    anchors: list[list[tuple[float, float]]] | None = None
                    ) -> tuple[Tensor, Tensor]:
    """(images (batch, 3, h, w), targets (n, 6)) on `device`; identical for the same seed.
    With `anchors` (pixels, per level) the objects are `level_labels`', else ordinary sizes."""
    size = (img, img) if isinstance(img, int) else tuple(img)
    targets = (synthetic_labels(nc, batch, seed) if anchors is None
               else level_labels(nc, batch, anchors, size, seed))
    images = render_images(targets, batch, size, seed)
    return images.to(device), targets.to(device)
