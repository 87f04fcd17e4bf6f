"""With --data: YOLOv5's AutoAnchor metric (best possible recall and anchors above threshold)
of the model's anchors on the train labels, as `check --data` reports it and YD405 judges it.
Computed once per run through `Facts.anchor_fit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from yolodiag.checks.engine import Facts


@dataclass(frozen=True)
class AnchorFit:
    """YOLOv5's AutoAnchor metric of the model's anchors on the train labels."""

    bpr: float
    aat: float
    labels: int
    img: int

    def as_dict(self) -> dict:
        return {"bpr": round(self.bpr, 6), "aat": round(self.aat, 6), "labels": self.labels,
                "img": self.img}


def anchor_fit(facts: Facts) -> AnchorFit | None:
    """BPR and AAT at the first traced size (None without train label rows or written
    anchors)."""
    import numpy as np

    from yolodiag.data import best_possible_recall, box_sizes

    built = facts.built
    split = facts.data.splits.get("train") if facts.data is not None else None
    if built is None or built.anchors is None or built.stride is None or split is None or \
            not isinstance(facts.spec.anchors, tuple):
        return None
    img = max(facts.first_ok.img) if facts.first_ok else 640
    sizes = box_sizes(split, img)
    if len(sizes) == 0:  # no labels: no recall to speak of (YD805 says why)
        return None
    anchors = np.array(built.pixel_anchors, np.float32).reshape(-1, 2)
    bpr, aat = best_possible_recall(sizes, anchors, facts.anchor_t)
    return AnchorFit(bpr, aat, len(sizes), img)
