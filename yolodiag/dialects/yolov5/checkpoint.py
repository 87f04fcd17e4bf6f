"""YOLOv5 checkpoints, read without running them, and what train.py would transfer from one.

The safe reader is every pickling dialect's (`dialects/common/checkpoint`): the pickle's
globals are listed and checked against an allow-list before anything is built, allowed classes
become inert records. YOLOv5's allow-list is its model modules, of the git checkout and of the
pip package; a file that is another framework's is named for what it is (checkpoint_format,
YD509). YOLOv5 need not be installed.

`transfer` reproduces train.py v7.0's `--weights` logic: which model it builds (the `--cfg`
YAML, or the checkpoint's own embedded YAML without one), which keys it excludes (anchors when
a cfg is given and it does not resume) and the name-and-shape intersection it loads.
"""

from __future__ import annotations

from pathlib import Path

from yolodiag.dialects.common import checkpoint as reader
from yolodiag.dialects.common import transfer as transfers
from yolodiag.dialects.common.checkpoint import CheckpointInfo, Record  # noqa: F401
from yolodiag.dialects.common.transfer import KeyTransfer, Transfer  # noqa: F401
from yolodiag.dialects.yolov5.checkpoint_format import foreign, ultralytics_global

TITLE = "YOLOv5 v7.0"
# Modules whose classes YOLOv5 checkpoints pickle: the git checkout's and the pip package's.
# Their classes are never imported here: each becomes an inert record (any class name, since a
# user's own block, e.g. the seed's models.common.BasicBlock, is pickled from there too).
MODEL_MODULES = ("models.yolo", "models.common", "models.experimental",
                 "yolov5.models.yolo", "yolov5.models.common", "yolov5.models.experimental")


def _layout(model_class: str) -> str:
    return ("pip package (yolov5.models)" if model_class.startswith("yolov5.")
            else "git checkout (models.yolo)")


FAMILY = reader.Family(
    dialect="yolov5", title=TITLE, model_modules=MODEL_MODULES, foreign=foreign,
    foreign_global=ultralytics_global, layout=_layout,
    unsafe_hint="check that this is a YOLOv5 checkpoint",
    pass_hint="pass a YOLOv5 .pt (yolov5s.pt, a train.py weights/last.pt)")


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read a YOLOv5 `.pt` (either layout, with or without optimizer and EMA, with numpy values)
    or a plain state dict. Raises Refused: YD508 for a file that is no readable torch
    checkpoint (empty, text, truncated), YD509 for another framework's checkpoint, YD504
    naming the globals outside the allow-list (nothing is built)."""
    return reader.read_checkpoint(path, FAMILY)


def claims(path: str | Path) -> str | None:
    """Why the file is a YOLOv5 v7.0 checkpoint, from its pickled model class alone (v7.0
    pickles DetectionModel; the pip package its own namespace), or None."""
    names = reader.pickled_globals(path) or []
    top = next((n for n in names if n.rpartition(".")[0] in MODEL_MODULES
                and n.endswith("Model") and n != "models.yolo.Model"), None)
    return f"its pickle names {top}" if top else None


def transfer(checkpoint: CheckpointInfo, cfg_spec, nc: int | None = None, *,
             resume: bool = False, modules: dict | None = None,
             names: dict[int, str] | None = None) -> Transfer:
    """train.py v7.0: `Model(cfg or ckpt['model'].yaml, nc=nc)`, then the checkpoint's float
    state intersected with the model's by key and shape, without anchor keys when a cfg is
    given and it does not resume. `cfg_spec` None: no --cfg (the embedded YAML is built).
    `modules`: the user's blocks (--modules), for either YAML. `names`: the data's class
    names, which this train.py does not match by."""
    spec = cfg_spec if cfg_spec is not None else embedded_spec(checkpoint, modules)
    exclude = ("anchor",) if cfg_spec is not None and not resume else ()
    moved, _ = transfers.intersect(checkpoint, spec, nc, cfg_given=cfg_spec is not None,
                                   resume=resume, exclude=exclude, modules=modules)
    return moved


def embedded_spec(checkpoint: CheckpointInfo, modules: dict | None = None):
    """The ModelSpec of the checkpoint's own embedded YAML (as text, read like a file)."""
    return transfers.embedded_spec(checkpoint, TITLE, modules)
