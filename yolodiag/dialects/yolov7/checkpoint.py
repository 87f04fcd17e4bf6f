"""YOLOv7 checkpoints, read without running them, and what its train.py does with `--weights`.

The reader is the shared safe one (`dialects/common/checkpoint`) with YOLOv7's allow-list: the
classes our YOLOv7 table and blocks name, pickled from `models.yolo`, `models.common` or
`models.experimental` of a YOLOv7 checkout, and torch.nn's module classes; nothing of them is
imported. A YOLOv5 v7.0 or Ultralytics checkpoint is named as such (YD509): YOLOv7's own
`torch.load` cannot unpickle it, its models.yolo having no DetectionModel.

`transfer` reproduces train.py (a207844, L83-93 and L200-215): the model is `--cfg` or the
checkpoint's embedded YAML built with the data's class count; `anchor` keys are left out when
a cfg is given and it does not resume (the substring takes the anchors and the `anchor_grid`
buffer, a state-dict key in YOLOv7); the name-and-shape intersection is loaded. Unlike YOLOv5
v7.0 it then loads the checkpoint's optimizer state whenever there is one, and its EMA: a
per-epoch checkpoint fine-tuned into a different architecture stops train.py there.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from yolodiag.dialects.common import checkpoint as reader
from yolodiag.dialects.common import transfer as transfers
from yolodiag.dialects.common.checkpoint import CheckpointInfo
from yolodiag.dialects.common.checkpoint_format import refusal, ultralytics_global
from yolodiag.dialects.common.transfer import StateLoad, Transfer
from yolodiag.dialects.yolov7.table import MODULES, YOLOV7_ONLY
from yolodiag.findings import Refused

TITLE = "YOLOv7"
MODEL_MODULES = ("models.yolo", "models.common", "models.experimental")
TOP_CLASS = "models.yolo.Model"  # what YOLOv7's train.py pickles as ckpt['model']
# YOLOv5 v7.0's top classes: a checkpoint naming one is YOLOv5's, not ours.
YOLOV5_TOP_CLASSES = frozenset({"DetectionModel", "SegmentationModel", "ClassificationModel"})
# Modules whose implicit-knowledge layers train.py puts in the no-decay group, by attribute.
IMPLICIT_HOLDERS = ("im", "imc", "imb", "imo", "ia")
PARAMETER_GROUP_ERROR = ("ValueError: loaded state dict contains a parameter group that "
                         "doesn't match the size of optimizer's group")
GROUP_COUNT_ERROR = "ValueError: loaded state dict has a different number of parameter groups"
EMA_ERROR = "RuntimeError: Error(s) in loading state_dict for Model"


@cache
def model_classes() -> frozenset[str]:
    """The class names a YOLOv7 checkpoint may pickle: its model class, the table's modules and
    the inner classes of our blocks (Res, ResX ...)."""
    import inspect

    from yolodiag.dialects.yolov7 import blocks, csp, heads

    inner = {name for module in (blocks, csp, heads)
             for name, value in vars(module).items()
             if inspect.isclass(value) and value.__module__ == module.__name__}
    return frozenset({"Model", *inner, *(n for n in MODULES if not n.startswith("nn."))})


def _allowed_name(name: str) -> bool:
    module, _, attribute = name.rpartition(".")
    return module in MODEL_MODULES and attribute in model_classes()


def _foreign_global(name: str) -> bool:
    """Another framework's global: Ultralytics', YOLOv5's package or a models.* class that is
    not ours (YOLOv5 v7.0's DetectionModel, C3 ...)."""
    return (ultralytics_global(name) or name.split(".")[0] == "yolov5"
            or name.rpartition(".")[0] in MODEL_MODULES)


def foreign(path: Path, names: list[str]) -> Refused | None:
    """YD509 for an Ultralytics or YOLOv5 v7.0 checkpoint (from its pickled top class)."""
    ultralytics = [n for n in names if ultralytics_global(n)]
    if ultralytics:
        top = next((n for n in ultralytics if n.startswith("ultralytics.nn.tasks.")),
                   ultralytics[0])
        return _foreign(path, f"an Ultralytics YOLOv8/YOLO11 checkpoint ({top})", top,
                        "Ultralytics", "load it with the ultralytics package")
    yolov5 = [n for n in names if n.split(".")[0] == "yolov5"
              or (n.rpartition(".")[0] in MODEL_MODULES
                  and n.rpartition(".")[2] in YOLOV5_TOP_CLASSES)]
    if yolov5:
        top = next((n for n in yolov5 if n.rpartition(".")[2] in YOLOV5_TOP_CLASSES), yolov5[0])
        return _foreign(path, f"a YOLOv5 v7.0 checkpoint ({top}, which YOLOv7's models.yolo "
                        "has no class for)", top, "YOLOv5",
                        "use it with a YOLOv5 model YAML (or --dialect yolov5)")
    return None


def _foreign(path: Path, what: str, top: str, framework: str, use: str) -> Refused:
    return refusal("YD509", f"{path} is not a YOLOv7 checkpoint: {what}; YOLOv7's train.py "
                   "cannot unpickle it", f"{use}, or give a YOLOv7 checkpoint (yolov7-tiny.pt, "
                   "a train.py weights/last.pt)", path,
                   {"framework": framework, "model_class": top})


FAMILY = reader.Family(
    dialect="yolov7", title=TITLE, model_modules=(), foreign=foreign,
    foreign_global=_foreign_global, layout=lambda model_class: "YOLOv7 checkout (models.yolo)",
    unsafe_hint="check that this is a YOLOv7 checkpoint",
    pass_hint="pass a YOLOv7 .pt (yolov7-tiny.pt, a train.py weights/last.pt)",
    allowed=_allowed_name)


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read a YOLOv7 `.pt` (train.py's per-epoch dict, a stripped last.pt/best.pt) or a plain
    state dict. Raises Refused: YD508 (no readable torch checkpoint), YD509 (YOLOv5's,
    Ultralytics'), YD504 (globals outside the allow-list, nothing built)."""
    return reader.read_checkpoint(path, FAMILY)


def claims(path: str | Path) -> str | None:
    """Why the file is a YOLOv7 checkpoint, from the globals its pickle names (nothing is
    unpickled): YOLOv7's `models.yolo.Model` with classes only YOLOv7 has; or None."""
    names = reader.pickled_globals(path) or []
    ours = sorted({n.rpartition(".")[2] for n in names
                   if n.rpartition(".")[0] in MODEL_MODULES} & YOLOV7_ONLY)
    if TOP_CLASS not in names or not ours:
        return None
    return f"its pickle names {TOP_CLASS} with {', '.join(ours[:3])}"


def transfer(checkpoint: CheckpointInfo, cfg_spec, nc: int | None = None, *,
             resume: bool = False, modules: dict | None = None,
             names: dict[int, str] | None = None) -> Transfer:
    """train.py: `Model(opt.cfg or ckpt['model'].yaml, nc=nc)`, the checkpoint's float state
    intersected by key and shape without `anchor` keys when a cfg is given and it does not
    resume, then the optimizer state and the EMA loaded (`state_loads`). `cfg_spec` None: no
    --cfg. `modules`: the user's blocks (--modules), for either YAML. `names`: the data's
    class names, which this train.py does not match by."""
    spec = cfg_spec if cfg_spec is not None else embedded_spec(checkpoint, modules)
    exclude = ("anchor",) if cfg_spec is not None and not resume else ()
    moved, built = transfers.intersect(checkpoint, spec, nc, cfg_given=cfg_spec is not None,
                                       resume=resume, exclude=exclude, modules=modules)
    moved.state_loads = state_loads(checkpoint, built.model)
    return moved


def embedded_spec(checkpoint: CheckpointInfo, modules: dict | None = None):
    """The ModelSpec of the checkpoint's own embedded YAML, read as YOLOv7 reads it."""
    return transfers.embedded_spec(checkpoint, TITLE, modules, dialect="yolov7")


def optimizer_groups(model) -> tuple[int, int, int]:
    """How many tensors train.py puts in each optimizer group of `model`: (no decay: BatchNorm
    weights and implicit-knowledge tensors, decayed weights, biases), its group order."""
    from torch import nn

    no_decay = decay = biases = 0
    for module in model.modules():
        biases += isinstance(getattr(module, "bias", None), nn.Parameter)
        if isinstance(module, nn.BatchNorm2d):
            no_decay += 1
        elif isinstance(getattr(module, "weight", None), nn.Parameter):
            decay += 1
        for name in IMPLICIT_HOLDERS:
            holder = getattr(module, name, None)
            if holder is not None:  # one implicit layer, or a list of them (one per level)
                no_decay += 1 if hasattr(holder, "implicit") else len(holder)
    return no_decay, decay, biases


def state_loads(checkpoint: CheckpointInfo, model) -> list[StateLoad]:
    """What train.py loads after the weights, in its order: `ckpt['optimizer']` when not None
    (torch compares the tensors per group), then `ckpt['ema']` when present (strictly: the
    same keys and shapes)."""
    loads = []
    if checkpoint.has_optimizer:
        saved, needed = checkpoint.optimizer_groups, optimizer_groups(model)
        error = (None if saved is None or saved == needed else GROUP_COUNT_ERROR
                 if len(saved) != len(needed) else PARAMETER_GROUP_ERROR)
        loads.append(StateLoad("optimizer", _groups(saved), _groups(needed), error))
    if checkpoint.ema_shapes is not None:
        ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        theirs = checkpoint.ema_shapes
        differ = sum(theirs.get(k) != shape for k, shape in ours.items())
        extra = sum(k not in ours for k in theirs)
        loads.append(StateLoad(
            "ema", f"an EMA model of {len(theirs)} tensors",
            f"{len(ours)} tensors, {differ} of them absent or of another shape there, "
            f"{extra} more there", EMA_ERROR if differ or extra else None))
    return loads


def _groups(sizes) -> str:
    if sizes is None:
        return "parameter groups yolodiag cannot read"
    return "parameter groups of " + ", ".join(map(str, sizes)) + " tensors"
