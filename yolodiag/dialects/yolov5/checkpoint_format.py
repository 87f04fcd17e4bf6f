"""Which framework wrote a `.pt` that is not YOLOv5 v7.0's, from the globals its pickle names
(listed by torch without unpickling anything): Ultralytics or YOLOv7. The byte-level checks
(YD508: empty, text, truncated, damaged) are every dialect's (`dialects/common/
checkpoint_format`) and are re-exported here. The checkpoint reader refuses with YD509 for a
checkpoint of another framework, YD504 for a pickle that names anything else outside the
allow-list. torch-free at import.
"""

from __future__ import annotations

from pathlib import Path

from yolodiag.dialects.common.checkpoint_format import (  # noqa: F401  (the reader's names)
    damaged,
    refusal,
    ultralytics_global,
    unreadable,
)
from yolodiag.findings import Refused

# Classes that YOLOv7 (WongKinYiu/yolov7) pickles from `models.yolo`/`models.common` and
# YOLOv5 v7.0 has none of: the heads and blocks of its stock YAMLs (shared/golden/yolov7).
YOLOV7_CLASSES = frozenset({
    "IDetect", "IAuxDetect", "IBin", "IKeypoint", "ImplicitA", "ImplicitM", "MP", "SP",
    "SPPCSPC", "RepConv", "ReOrg", "DownC", "Stem", "Shortcut", "BottleneckCSPA",
    "BottleneckCSPB", "BottleneckCSPC", "ResCSPB", "ResCSPC", "ResXCSPB", "ResXCSPC",
})
# YOLOv5 v7.0 pickles its models as DetectionModel (or Segmentation/ClassificationModel);
# YOLOv5 up to v6.2 and YOLOv7 both pickle `Model`, so the blocks above tell them apart.
YOLOV7_TOP_CLASS = "models.yolo.Model"


def foreign(path: Path, names: list[str]) -> Refused | None:
    """YD509 when the pickle's globals are another framework's: Ultralytics (its own package
    namespace) or YOLOv7 (`models.yolo.Model` with YOLOv7-only blocks)."""
    ultralytics = [n for n in names if ultralytics_global(n)]
    if ultralytics:
        top = next((n for n in ultralytics if n.startswith("ultralytics.nn.tasks.")),
                   ultralytics[0])
        return _foreign(path, f"an Ultralytics YOLOv8/YOLO11 checkpoint ({top})", top,
                        "Ultralytics",
                        "load it with the ultralytics package (`yolo val model=...`), or give a "
                        "YOLOv5 v7.0 checkpoint (yolov5s.pt, a train.py weights/last.pt)")
    classes = {n.rpartition(".")[2] for n in names if n.startswith("models.")}
    yolov7 = sorted(classes & YOLOV7_CLASSES)
    if YOLOV7_TOP_CLASS in names and yolov7:
        return _foreign(path, f"a YOLOv7 checkpoint ({YOLOV7_TOP_CLASS} with "
                        f"{', '.join(yolov7[:4])}: YOLOv7 classes that YOLOv5 v7.0 has none of)",
                        YOLOV7_TOP_CLASS, "YOLOv7",
                        "use it with YOLOv7's own train.py, or give a YOLOv5 v7.0 checkpoint "
                        "(yolov5s.pt, a train.py weights/last.pt)")
    return None


def _foreign(path: Path, what: str, top: str, framework: str, hint: str) -> Refused:
    return refusal("YD509", f"{path} is not a YOLOv5 v7.0 checkpoint: {what}; yolodiag reads "
                   "YOLOv5 checkpoints", hint, path,
                   {"framework": framework, "model_class": top})
