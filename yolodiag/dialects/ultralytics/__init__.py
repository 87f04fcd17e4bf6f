"""Ultralytics 8.4.190 (the YAMLs of `ultralytics/cfg/models`: YOLOv8, YOLO11, YOLO12, YOLO26,
v3, v5u, v6, v9, v10): the third dialect, where most users are.

What its code decides, each in its own module: how a name becomes a file, a scale and the
numbers rows are scaled by (`scaling`, torch-free); the module table (`table`) and parse_model's
channel rules (`rules`); its layers and blocks (`conv`, `block`, `attention`, `area_attention`,
`elan`); the stock models' cost and strides (`stock`); the anchor-free heads Detect and
v10Detect (`heads`, `decode`); what `DetectionModel.__init__` does after the layers are built
(`model`); a user's Ultralytics for --repo and --modules (`repo`, `registration`,
`stockmatch`); its loss and task-aligned assigner (`loss`, `tal`, `boxes`), what its trainer
does around them (`trainer`: optimizer=auto, the EMA, the bias priors; `fuse`) and its
validation (`evaluation`), for gradflow and overfit; its checkpoints and what
`BaseModel.load` transfers from one (`checkpoint`, `transfer_rule`); its run folders
(`runs`) and its reading of a data YAML's `path:` (`datapaths`).
"""

from __future__ import annotations

from typing import Any

from yolodiag.dialects import Dialect, Lazy, register
from yolodiag.dialects.common.reading import public_definitions, row_module_names
from yolodiag.dialects.common.rules import ACTIVATIONS
from yolodiag.dialects.ultralytics.rules import RULES, head_outputs
from yolodiag.dialects.ultralytics.scaling import locate, read_scaling
from yolodiag.dialects.ultralytics.stock import STOCK_STRIDES, stock_cost
from yolodiag.dialects.ultralytics.table import MODULES, ULTRALYTICS_ONLY

HEAD_RULES = frozenset({"anchor-free-detect", "v10detect"})


def _sniff(data: Any) -> str | None:
    """Ours when the YAML has a `scales` table, uses a module only Ultralytics has, or has no
    `anchors` and a Detect row given only the class count (`[nc]`)."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("scales"), dict):
        return "it has a `scales` table"
    found = sorted(row_module_names(data) & ULTRALYTICS_ONLY)
    if found:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        return f"it uses modules only Ultralytics has ({shown})"
    if "anchors" not in data and _detect_rows_without_anchors(data):
        return "it has no `anchors` and its Detect row takes only `[nc]` (anchor-free)"
    return None


def _detect_rows_without_anchors(data: dict) -> bool:
    rows = [row for key in ("backbone", "head") if isinstance(data.get(key), list)
            for row in data[key]]
    return any(isinstance(row, list) and len(row) == 4 and row[2] == "Detect"
               and isinstance(row[3], list) and len(row[3]) == 1 for row in rows)


def _namespace() -> dict[str, Any]:
    """Our Ultralytics layers, blocks and heads: what `ultralytics.nn.modules` puts in a
    --modules file's reach."""
    from yolodiag.dialects.common import conv as common_conv
    from yolodiag.dialects.ultralytics import area_attention, attention, block, conv, elan, heads

    return public_definitions(common_conv, conv, block, attention, area_attention, elan, heads)


def _data_path_rule(data_yaml, written):
    from yolodiag.dialects.ultralytics.datapaths import resolve

    return resolve(data_yaml, written)


ULTRALYTICS = register(Dialect(
    name="ultralytics",
    title="Ultralytics",
    version="8.4.190",
    modules=MODULES,
    rules=RULES,
    activations=ACTIVATIONS,
    required_keys=("nc", "backbone", "head"),
    head_rules=HEAD_RULES,
    head_outputs=head_outputs,
    sniff=_sniff,
    model=Lazy("yolodiag.dialects.ultralytics.model"),
    loss=Lazy("yolodiag.dialects.ultralytics.loss"),
    evaluation=Lazy("yolodiag.dialects.ultralytics.evaluation"),
    checkpoint=Lazy("yolodiag.dialects.ultralytics.checkpoint"),
    runs=Lazy("yolodiag.dialects.ultralytics.runs"),
    repo=Lazy("yolodiag.dialects.ultralytics.repo"),
    checkout=Lazy("yolodiag.dialects.ultralytics.registration"),
    stockmatch=Lazy("yolodiag.dialects.ultralytics.stockmatch"),
    namespace=_namespace,
    advice={"block": "C3k2", "head": "Detect", "stem": "`[-1, 1, Conv, [64, 3, 2]]`",
            "pooling": "SPPF",
            "blocks_file": "ultralytics/nn/modules/block.py", "parser_file": "tasks.py"},
    capabilities=frozenset({"anchor-free", "dfl", "class-prior", "stock-cost", "scales",
                            "stock-strides", "loss"}),
    stock_cost=stock_cost,
    stock_strides=STOCK_STRIDES,
    profiler="ultralytics-thop 2.2",
    read_scaling=read_scaling,
    locate=locate,
    symbols=frozenset({"nc"}),
    data_path_rule=_data_path_rule,
))
