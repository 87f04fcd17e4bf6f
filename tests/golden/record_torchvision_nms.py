"""Records torchvision.ops.nms on the random cases of tests/nms_cases.py into
torchvision_nms.json, which test_metrics compares yolodiag's greedy NMS with where torchvision
is not installed (it is not a dependency). Run with an interpreter that has torchvision:

    PYTHONPATH=tests python tests/golden/record_torchvision_nms.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torchvision
from nms_cases import IOU_THRESHOLDS, cases, digest
from torchvision.ops import nms

OUT = Path(__file__).resolve().parent / "torchvision_nms.json"


def main() -> int:
    recorded = {"torch": torch.__version__, "torchvision": torchvision.__version__, "cases": []}
    for n, classes, boxes, scores, unique in cases():
        recorded["cases"].append({
            "n": n, "classes": classes, "digest": digest(boxes, scores, unique),
            "kept": {str(t): sorted(nms(boxes, scores, t).tolist()) for t in IOU_THRESHOLDS},
            "kept_in_order": {str(t): nms(boxes, unique, t).tolist() for t in IOU_THRESHOLDS}})
    OUT.write_text(json.dumps(recorded, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(recorded['cases'])} cases, torchvision {torchvision.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
