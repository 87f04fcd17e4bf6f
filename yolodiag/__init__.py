"""yolodiag: find why an edited YOLOv5 model will train to zero precision and recall.

The Python API (`build_model`, `compute_loss`, `non_max_suppression`, `ap_per_class`) imports
torch on first use, so `import yolodiag` and the CLI's `--help` stay instant.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from yolodiag.build.builder import BuiltModel


def build_model(yaml_path: str | Path, nc: int | None = None, modules: Iterable = (),
                device: str = "cpu", dialect: str = "auto") -> BuiltModel:
    """Build a model YAML exactly as its family's code would (YOLOv5 v7.0 for a YAML no other
    dialect claims, or `dialect`), without evaluating anything in it.

    Returns a BuiltModel: `.model` (an nn.Module whose state_dict keys and shapes equal
    YOLOv5's DetectionModel), `.layers` (one record per YAML row), `.stride`, `.anchors`
    (grid units). `nc` overrides the YAML's class count. `device="meta"` builds shapes only.
    `modules`: the user's blocks, as --modules files (executed: only pass your own) or as
    module-table entries (name -> ModuleEntry, e.g. from `usermodules.load_modules`).
    """
    from yolodiag.build.builder import build
    from yolodiag.dialects import choose_file
    from yolodiag.spec import load_spec
    from yolodiag.usermodules import load_modules

    family = choose_file(yaml_path, dialect).dialect
    entries = modules if isinstance(modules, dict) else load_modules(modules, (), family)
    spec = load_spec(yaml_path, extra_modules=frozenset(entries), dialect=dialect)
    return build(spec, nc=nc, device=device, modules=entries)


_LAZY = {"non_max_suppression": "yolodiag.metrics", "ap_per_class": "yolodiag.metrics",
         "synthetic_batch": "yolodiag.synthetic"}


def __getattr__(name: str):
    """The default dialect's loss (YOLOv5's), NMS and AP (and the synthetic batch), imported
    with torch on first use."""
    if name == "compute_loss":
        from yolodiag.dialects import DEFAULT, DIALECTS

        return DIALECTS[DEFAULT].loss.compute_loss
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'yolodiag' has no attribute {name!r}")


__all__ = ["ap_per_class", "build_model", "compute_loss", "non_max_suppression",
           "synthetic_batch", "__version__"]
