"""Ultralytics 8.4.190 checkpoints, read without running them, and what its trainer does with
one.

The reader is the shared safe one (`dialects/common/checkpoint`) with Ultralytics' allow-list:
classes pickled from `ultralytics.nn.tasks` and `ultralytics.nn.modules.*` (any class there,
a user's block registered into `ultralytics.nn.modules.block` included), the options namespace
`ultralytics.utils.IterableSimpleNamespace`, torch.nn's module classes; each becomes an inert
record, nothing is imported (Ultralytics itself loads them with `weights_only=False`). The
model is `ckpt['ema']` when there is one, else `ckpt['model']` (a mid-training last.pt keeps
only the EMA; a stripped or released one only the model). A YOLOv5 v7.0 or YOLOv7 checkpoint is
named as such (YD509): Ultralytics stops on its `models.*` classes.

`transfer` is `BaseModel.load` (`transfer_rule`), as the trainer calls it: the model is built
from the YAML (`model=x.yaml pretrained=w.pt`) or the checkpoint's embedded one (`model=w.pt`)
with the data's class count, and it logs `Transferred X/Y items from pretrained weights`.
"""

from __future__ import annotations

from pathlib import Path

from yolodiag.dialects.common import checkpoint as reader
from yolodiag.dialects.common import transfer as transfers
from yolodiag.dialects.common.checkpoint import CheckpointInfo
from yolodiag.dialects.common.checkpoint_format import refusal
from yolodiag.dialects.common.transfer import Transfer
from yolodiag.findings import Refused

TITLE = "Ultralytics"
MODEL_MODULE_PREFIXES = ("ultralytics.nn.tasks.", "ultralytics.nn.modules.")
# Objects of the checkpoint that are not modules but plain records of values.
VALUE_CLASSES = frozenset({"ultralytics.utils.IterableSimpleNamespace"})
TOP_CLASSES = frozenset({"DetectionModel", "SegmentationModel", "PoseModel", "OBBModel",
                         "ClassificationModel", "WorldModel", "YOLOEModel", "RTDETRDetectionModel"})
# YOLOv5's and YOLOv7's checkpoints pickle their models from these modules.
OTHER_FRAMEWORK_MODULES = ("models.", "yolov5.models.")
LOG = "Transferred {x}/{y} items from pretrained weights"


def _allowed_name(name: str) -> bool:
    """A class of ultralytics.nn.tasks or of one file of ultralytics.nn.modules (block, conv,
    head ...), or the options namespace: nothing from deeper or other modules."""
    module, _, attribute = name.rpartition(".")
    if name in VALUE_CLASSES:
        return True
    return (name.startswith(MODEL_MODULE_PREFIXES) and attribute.isidentifier()
            and module.count(".") <= 3)


def _foreign_global(name: str) -> bool:
    return name.startswith(OTHER_FRAMEWORK_MODULES)


def foreign(path: Path, names: list[str]) -> Refused | None:
    """YD509 for a YOLOv5 v7.0 or YOLOv7 checkpoint (classes of their `models.*` modules)."""
    theirs = [n for n in names if _foreign_global(n)]
    if not theirs:
        return None
    top = next((n for n in theirs if n.rpartition(".")[2] in ("DetectionModel", "Model")),
               theirs[0])
    framework = "YOLOv7" if top == "models.yolo.Model" else "YOLOv5"
    return refusal("YD509", f"{path} is not an Ultralytics checkpoint: its pickle names {top}, a "
                   f"{framework} class; Ultralytics' loader stops on its `models.*` modules "
                   "(it reads no YOLOv5/YOLOv7 checkpoints)",
                   f"use it with {framework}'s own train.py (or --dialect {framework.lower()}), "
                   "or give an Ultralytics checkpoint (yolo11n.pt, a run's weights/best.pt)",
                   path, {"framework": framework, "model_class": top})


FAMILY = reader.Family(
    dialect="ultralytics", title=TITLE, model_modules=(), foreign=foreign,
    foreign_global=_foreign_global, layout=lambda model_class: f"Ultralytics ({model_class})",
    unsafe_hint="check that this is an Ultralytics checkpoint",
    pass_hint="pass an Ultralytics .pt (yolo11n.pt, a run's weights/best.pt)",
    allowed=_allowed_name,
    model_of=lambda content: content.get("ema") or content.get("model"),
    options_key="train_args")


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read an Ultralytics `.pt` (released, stripped best.pt/last.pt, or a mid-training last.pt
    whose model is its EMA) or a plain state dict. Raises Refused: YD508 (no readable torch
    checkpoint), YD509 (YOLOv5's, YOLOv7's), YD504 (globals outside the allow-list, nothing
    built)."""
    return reader.read_checkpoint(path, FAMILY)


def claims(path: str | Path) -> str | None:
    """Why the file is an Ultralytics checkpoint, from the model class its pickle names."""
    names = reader.pickled_globals(path) or []
    top = next((n for n in names if n.startswith("ultralytics.nn.tasks.")
                and n.rpartition(".")[2] in TOP_CLASSES), None)
    return f"its pickle names {top}" if top else None


def transfer(checkpoint: CheckpointInfo, cfg_spec, nc: int | None = None, *,
             resume: bool = False, modules: dict | None = None,
             names: dict[int, str] | None = None) -> Transfer:
    """The trainer's `DetectionModel(cfg, nc=data nc).load(weights)`: `cfg_spec` None is
    `model=w.pt` (the embedded YAML rebuilt), else `model=x.yaml pretrained=w.pt`. `names`:
    the data's class names (the trainer sets them before loading; None: the YAML's
    placeholders, which remap nothing)."""
    from yolodiag.build.builder import build
    from yolodiag.dialects.ultralytics.transfer_rule import load

    spec = cfg_spec if cfg_spec is not None else embedded_spec(checkpoint, modules)
    nc = nc or spec.nc
    built = build(spec, nc=nc, device="meta", modules=modules)
    target = {k: tuple(v.shape) for k, v in built.model.state_dict().items()}
    keys, unused = load(checkpoint, spec, target, names)
    return Transfer(cfg_spec is not None, resume, nc, spec, keys, unused, log_format=LOG,
                    trainer="Ultralytics' trainer", with_cfg="as `model=` (`pretrained=` the .pt)",
                    without_cfg="with `model=` the .pt",
                    cfg_hint="train `model={yaml} pretrained=` the .pt (a path: "
                             "`pretrained=True` loads nothing into a YAML model)")


def embedded_spec(checkpoint: CheckpointInfo, modules: dict | None = None):
    """The ModelSpec of the checkpoint's own embedded YAML, read as Ultralytics reads it."""
    return transfers.embedded_spec(checkpoint, TITLE, modules, dialect="ultralytics")
