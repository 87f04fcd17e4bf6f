"""YOLOv5 v7.0: the first dialect, and the reading of any YAML no other dialect claims.

Everything yolodiag knows about YOLOv5's own code lives in this package: the module table and
channel rules of `parse_model` (`table`, `rules`), its blocks and heads (`blocks`, `heads`, and
the seed document's `seed`), what `DetectionModel.__init__` does after the layers are built
(`model`), its loss and target assignment (`loss`), its per-epoch validation (`evaluation`),
its checkpoints and what train.py transfers from them (`checkpoint`, `checkpoint_format`), its
run folders (`runs`), a user's checkout (`registration`, `stockmatch`, `repo`, `repo_worker`),
and the bundled example models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yolodiag.dialects import Dialect, Lazy, register
from yolodiag.dialects.common.anchors import DEFAULT_ANCHOR_ROWS
from yolodiag.dialects.common.reading import public_definitions, row_module_names
from yolodiag.dialects.common.rules import REQUIRED_KEYS, head_outputs
from yolodiag.dialects.yolov5.rules import RULES
from yolodiag.dialects.yolov5.table import ACTIVATIONS, MODULES

HEAD_RULES = frozenset({"detect", "segment"})


def _sniff(data: Any) -> str | None:
    """Ours when the YAML has parse_model's keys and every row names a module of our table."""
    if not isinstance(data, dict) or any(key not in data for key in REQUIRED_KEYS):
        return None
    names = row_module_names(data)
    if not names or not names <= set(MODULES):
        return None
    return "its keys and module names are YOLOv5 v7.0's"


def _namespace() -> dict[str, Any]:
    """The classes and functions of our blocks, heads and seed: what YOLOv5's common.py and
    yolo.py put in a --modules file's reach."""
    from yolodiag.dialects.common import conv
    from yolodiag.dialects.yolov5 import blocks, heads, seed

    return public_definitions(conv, blocks, heads, seed)


YOLOV5 = register(Dialect(
    name="yolov5",
    title="YOLOv5",
    version="v7.0",
    modules=MODULES,
    rules=RULES,
    activations=ACTIVATIONS,
    required_keys=REQUIRED_KEYS,
    head_rules=HEAD_RULES,
    head_outputs=head_outputs,
    sniff=_sniff,
    model=Lazy("yolodiag.dialects.yolov5.model"),
    loss=Lazy("yolodiag.dialects.yolov5.loss"),
    evaluation=Lazy("yolodiag.dialects.yolov5.evaluation"),
    checkpoint=Lazy("yolodiag.dialects.yolov5.checkpoint"),
    runs=Lazy("yolodiag.dialects.yolov5.runs"),
    repo=Lazy("yolodiag.dialects.yolov5.repo"),
    checkout=Lazy("yolodiag.dialects.yolov5.registration"),
    stockmatch=Lazy("yolodiag.dialects.yolov5.stockmatch"),
    namespace=_namespace,
    advice={"block": "Conv", "head": "Detect", "stem": "`[-1, 1, Conv, [64, 6, 2, 2]]`",
            "pooling": "SPPF",
            "blocks_file": "models/common.py", "parser_file": "yolo.py"},
    bundled=Path(__file__).parent / "models" / "yolov5s-resnet18.yaml",
    bundled_note="the seed's ResNet-18 BasicBlock backbone under the YOLOv5s head",
    capabilities=frozenset({"anchors", "objectness", "loss", "stock-cost"}),
    default_anchors=DEFAULT_ANCHOR_ROWS,
    # yolov5n/s/m/l/x (one P5 layout at each width_multiple), counted by YOLOv5's rules
    # (yolov5s: 16.6, as YOLOv5 prints).
    stock_gflops={0.25: 4.56, 0.5: 16.62, 0.75: 49.23, 1.0: 109.58, 1.25: 206.31},
))
