"""The target assignment check's YD404 and the report's `assignment` section read: YOLOv5's
assignment of a batch on the model at the first traced size (the synthetic batch of ordinary
object sizes, or with --data the train labels). Computed once per run through
`Facts.assignment`; it never builds or trains anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from yolodiag.checks.engine import Facts

SYNTHETIC_IMAGES = 16  # about 40 objects: every level of a sound model gets positives
DATA_IMAGES = 512  # --data: the train images assigned (image headers are read for their sizes)


@dataclass(frozen=True)
class TargetAssignment:
    """YOLOv5's target assignment of a batch on a model: the synthetic one
    (`yolodiag.synthetic`), or with --data the train split's labels."""

    img: tuple[int, int]
    images: int
    targets: int
    strides: tuple[float, ...]
    positives: tuple[int, ...]  # per level
    positives_per_anchor: tuple[tuple[int, ...], ...]
    unmatched: tuple[int, ...]  # target indices no anchor of any level takes
    target_sides: tuple[float, ...]  # sqrt(w * h) of each target, pixels
    source: str = "synthetic"  # or "train" (--data)

    def as_dict(self) -> dict:
        return {"source": self.source, "img": list(self.img), "images": self.images,
                "targets": self.targets,
                "strides": list(self.strides), "positives_per_level": list(self.positives),
                "positives_per_anchor": [list(p) for p in self.positives_per_anchor],
                "unmatched": len(self.unmatched)}


def ordinary_sides(strides: tuple[float, ...], img: int) -> tuple[float, float]:
    """Object sides (fractions of the image) a model with these Detect strides is built for:
    from 2 cells of its finest level to 8 cells of its coarsest (16 to 256 px for P3-P5),
    at most 0.6 of the image."""
    return 2 * min(strides) / img, min(8 * max(strides) / img, 0.6)


def target_assignment(facts: Facts) -> TargetAssignment | None:
    """Assign the synthetic batch (with --data: the train labels, letterboxed) at the first
    traced size with the model's anchors and the grids its Detect inputs really have (None for
    `anchors: N` or an untraced model)."""
    import torch

    from yolodiag.synthetic import synthetic_labels

    built, size = facts.built, facts.first_ok
    if not isinstance(facts.spec.anchors, tuple) or built is None or built.stride is None \
            or size is None or not facts.dialect.can(frozenset({"anchors", "loss"})):
        return None
    assign = facts.dialect.loss.assign
    head = facts.spec.layers[built.head_index]
    grids = [tuple(size.layer(i).out_shape[2:]) for i in head.sources]
    if len(grids) != len(built.stride):
        return None
    h, w = size.img
    train = facts.data.splits.get("train") if facts.data is not None else None
    if train is not None and any(len(rows) for rows in train.labels.values()):  # else YD805
        from yolodiag.data import letterboxed_targets

        images = list(train.labels)[:DATA_IMAGES]
        targets, source = letterboxed_targets(train, images, size.img), "train"
    else:
        images = range(SYNTHETIC_IMAGES)
        targets = synthetic_labels(built.nc, SYNTHETIC_IMAGES, seed=0,
                                   sides=ordinary_sides(built.stride, max(h, w)))
        source = "synthetic"
    result = assign(targets, built.anchors.cpu(), grids, facts.anchor_t)
    sides = (targets[:, 4] * w * targets[:, 5] * h).sqrt()
    return TargetAssignment(size.img, len(images), len(targets), built.stride,
                               result.positives, result.positives_per_anchor, result.unmatched,
                               tuple(torch.round(sides, decimals=1).tolist()), source)
