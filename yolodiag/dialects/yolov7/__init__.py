"""YOLOv7 (WongKinYiu/yolov7 at commit a207844): the second dialect, the seed author's working
variant.

What its code decides, each in its own module: the module table (`table`) and the channel rules
it shares with YOLOv5 (`dialects/common/rules.py`, plus Shortcut and ReOrg); its blocks
(`blocks`, `csp`) and heads Detect, IDetect and IAuxDetect (`heads`); what `Model.__init__` does
after the layers are built (`model`); its losses, ComputeLossOTA, which train.py trains with, and
ComputeLoss, its validation loss (`loss`, `ota`); test.py's NMS, matching and AP (`evaluation`);
its checkpoints and what train.py transfers and then loads from them (`checkpoint`); its run
folders (`runs`); a user's checkout for --repo and --modules (`repo`, `registration`,
`stockmatch`). What it shares with YOLOv5 exactly is written once, in `dialects/common/`.
"""

from __future__ import annotations

from typing import Any

from yolodiag.dialects import Dialect, Lazy, register
from yolodiag.dialects.common.anchors import DEFAULT_ANCHOR_ROWS
from yolodiag.dialects.common.reading import public_definitions, row_module_names
from yolodiag.dialects.common.rules import REQUIRED_KEYS, RULES, head_outputs
from yolodiag.dialects.yolov7.table import ACTIVATIONS, MODULES, YOLOV7_ONLY

HEAD_RULES = frozenset({"detect"})


def _sniff(data: Any) -> str | None:
    """Ours when a row names a module only YOLOv7 has (IDetect, RepConv, MP, SPPCSPC...)."""
    found = sorted(row_module_names(data) & YOLOV7_ONLY)
    if not found:
        return None
    shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
    return f"it uses modules only YOLOv7 has ({shown})"


def _namespace() -> dict[str, Any]:
    """Our YOLOv7 blocks and heads: what its common.py and yolo.py put in a --modules file's
    reach."""
    from yolodiag.dialects.yolov7 import blocks, csp, heads

    return public_definitions(blocks, csp, heads)


YOLOV7 = register(Dialect(
    name="yolov7",
    title="YOLOv7",
    version="a207844",
    modules=MODULES,
    rules=RULES,
    activations=ACTIVATIONS,
    required_keys=REQUIRED_KEYS,
    head_rules=HEAD_RULES,
    head_outputs=head_outputs,
    sniff=_sniff,
    model=Lazy("yolodiag.dialects.yolov7.model"),
    loss=Lazy("yolodiag.dialects.yolov7.loss"),
    checkpoint=Lazy("yolodiag.dialects.yolov7.checkpoint"),
    runs=Lazy("yolodiag.dialects.yolov7.runs"),
    evaluation=Lazy("yolodiag.dialects.yolov7.evaluation"),
    repo=Lazy("yolodiag.dialects.yolov7.repo"),
    checkout=Lazy("yolodiag.dialects.yolov7.registration"),
    stockmatch=Lazy("yolodiag.dialects.yolov7.stockmatch"),
    namespace=_namespace,
    advice={"block": "Conv", "head": "IDetect", "stem": "`[-1, 1, Conv, [32, 3, 2]]`",
            "pooling": "SPPCSPC",
            "blocks_file": "models/common.py", "parser_file": "yolo.py"},
    capabilities=frozenset({"anchors", "objectness", "loss"}),
    # YOLOv5's rows (tiny, the P6 models, the baselines) and YOLOv7's own P5 rows (yolov7,
    # yolov7x, yolor-csp, yolov4-csp at 640), each with the stride it serves in them.
    default_anchors={**DEFAULT_ANCHOR_ROWS, (12, 16, 19, 36, 40, 28): 8,
                     (36, 75, 76, 55, 72, 146): 16, (142, 110, 192, 243, 459, 401): 32},
    head_inputs_per_row={"IAuxDetect": 2},  # lead levels, then as many auxiliary ones
))
