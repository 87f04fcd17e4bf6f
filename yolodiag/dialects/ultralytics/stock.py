"""Facts about Ultralytics 8.4.190's stock detection models that checks compare a user's with,
torch-free: GFLOPs at 640 per stock model and scale (recorded with the real package where
../shared/golden/ultralytics/build.json has the model, else the figure its YAML prints in its
`scales` comments), and the strides of its stock head designs."""

from __future__ import annotations

import re
from pathlib import Path

from yolodiag.dialects.ultralytics.scaling import LETTER_IN_PATH

STOCK_GFLOPS: dict[str, dict[str, float]] = {
    "yolo11": {"n": 6.673, "s": 21.836, "m": 68.643, "l": 87.851, "x": 196.315},
    "yolo12": {"n": 7.634, "s": 23.653, "m": 68.1, "l": 89.7, "x": 200.3},
    "yolo26": {"n": 6.24, "s": 23.079, "m": 75.4, "l": 93.8, "x": 209.5},
    "yolo26-p2": {"n": 9.648, "s": 28.023, "m": 91.4, "l": 115.3, "x": 256.9},
    "yolo26-p6": {"n": 5.996, "s": 22.331, "m": 77.3, "l": 97.0, "x": 216.6},
    "yolov8": {"n": 8.855, "s": 28.812, "m": 79.314, "l": 165.735, "x": 258.537},
    "yolov8-p2": {"n": 17.429, "s": 39.67},
    "yolov8-p6": {"n": 8.845, "s": 28.726, "m": 83.5, "l": 167.9, "x": 261.8},
    "yolov8-ghost": {"n": 5.803, "s": 16.416, "m": 32.7, "l": 53.7, "x": 83.3},
    "yolov8-ghost-p2": {"n": 13.832, "s": 25.045, "m": 42.8, "l": 69.1, "x": 103.3},
    "yolov8-ghost-p6": {"n": 5.814, "s": 16.41, "m": 34.4, "l": 55.3, "x": 85.7},
    "yolov10": {"n": 8.799, "s": 25.228, "m": 64.609, "l": 127.989, "x": 171.99},
    "yolov10b": {"b": 99.468},  # no scale letter Ultralytics reads: its only row
    "yolov9": {"s": 27.552, "m": 77.86},
    "yolov9t": {"": 8.481}, "yolov9c": {"": 104.014}, "yolov9e": {"": 193.007},
    "yolov6": {"n": 13.026, "s": 44.559},
    "yolov5": {"n": 7.839, "s": 24.21}, "yolov5-p6": {"n": 7.952, "s": 24.617},
    "yolov3": {"": 283.318}, "yolov3-spp": {"": 284.158}, "yolov3-tiny": {"": 19.125},
}
# P3-P5, P2-P5, P3-P6, and yolov3-tiny's P4-P5.
STOCK_STRIDES = frozenset({(8, 16, 32), (4, 8, 16, 32), (8, 16, 32, 64), (16, 32)})
_BOUNDARY = re.compile(r"[-_.]|$")


def stock_model(path: str | Path) -> str | None:
    """The stock model a file derives from: the longest stock name its stem (scale letter
    removed) starts with, at a word boundary (`yolo11-resnet18` -> yolo11)."""
    stem = LETTER_IN_PATH.sub(r"\1\3", Path(path).stem)
    found = [name for name in STOCK_GFLOPS if stem.startswith(name)
             and _BOUNDARY.match(stem, len(name))]
    return max(found, key=len) if found else None


def stock_cost(spec) -> tuple[float, str] | None:
    """GFLOPs at 640 of the stock model of the spec's family and scale, and its name."""
    name = stock_model(spec.path)
    gflops = STOCK_GFLOPS.get(name or "", {}).get(spec.scale)
    if gflops is None:
        return None
    shown = re.sub(r"(\d+)(.*)$", rf"\g<1>{spec.scale}\g<2>", name, count=1)
    return gflops, f"stock {shown}"
