"""yolodiag: find why an edited YOLOv5 model will train to zero precision and recall.

The Python API (`build_model`, ...) imports torch on first use, so `import yolodiag` and the
CLI's `--help` stay instant.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from yolodiag.reference.builder import BuiltModel


def build_model(yaml_path: str | Path, nc: int | None = None, modules: Iterable = (),
                device: str = "cpu") -> BuiltModel:
    """Build a model YAML exactly as YOLOv5 v7.0 would, without evaluating anything in it.

    Returns a BuiltModel: `.model` (an nn.Module whose state_dict keys and shapes equal
    YOLOv5's DetectionModel), `.layers` (one record per YAML row), `.stride`, `.anchors`
    (grid units). `nc` overrides the YAML's class count. `device="meta"` builds shapes only.
    `modules` is reserved for user blocks (--modules) and must be empty for now.
    """
    from yolodiag.reference.builder import build
    from yolodiag.spec import load_spec

    if tuple(modules):
        raise NotImplementedError("user modules (--modules) are not supported yet")
    return build(load_spec(yaml_path), nc=nc, device=device)


__all__ = ["build_model", "__version__"]
