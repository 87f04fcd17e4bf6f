"""ModelSpec: the model a YAML describes, as pure data with YAML line numbers, and its values.

Made by the reader (`yolodiag.spec.reader`), read by every later stage; nothing here reads
files, imports torch or knows a dialect beyond its name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from yolodiag.yaml_text import DroppedText


@dataclass(frozen=True)
class Symbol:
    """A name YOLOv5 resolves from parse_model's locals: `nc` or `anchors`."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Activation:
    """`nn.LeakyReLU(0.1)`: an activation class from the closed list and literal arguments."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    def __str__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs]
        return f"nn.{self.name}({', '.join(parts)})"


@dataclass(frozen=True)
class Scaling:
    """How a family scales a YAML's rows: repeats by depth, widths by width (after capping
    them at max_channels), and which scale letter of a `scales:` table gave them, and why."""

    depth_multiple: float
    width_multiple: float
    max_channels: float = math.inf
    scale: str = ""
    source: str = ""  # "name", "flag", "first", "only"; "" without a scales table
    reason: str = ""
    options: tuple[tuple[str, Any], ...] = ()  # other top-level keys the parser reads


ArgValue = int | float | bool | str | None | Symbol | Activation | tuple


def absolute_source(index: int, f: int) -> int:
    """Layer `index`'s `from` entry as an absolute layer index (-1 before layer 0: the image)."""
    return index + f if f < 0 else f


@dataclass(frozen=True)
class LayerSpec:
    """One `[from, number, module, args]` row, as written (number before depth_multiple)."""

    index: int
    from_: int | tuple[int, ...]
    number: int
    module: str
    args: tuple[ArgValue, ...]
    section: str
    line: int

    @property
    def sources(self) -> tuple[int, ...]:
        """The absolute indices of the layers this row reads (-1: the input image)."""
        froms = (self.from_,) if isinstance(self.from_, int) else self.from_
        return tuple(absolute_source(self.index, f) for f in froms)


@dataclass(frozen=True)
class ModelSpec:
    path: str
    nc: int
    depth_multiple: float
    width_multiple: float
    anchors: tuple[tuple[float, ...], ...] | int
    layers: tuple[LayerSpec, ...]
    activation: Activation | None = None
    ch: int = 3
    key_lines: dict[str, int] = field(default_factory=dict)
    dropped: DroppedText | None = None  # characters the family's ASCII reading leaves out
    dialect: str | None = None  # the name of the dialect it was read as (None: the default)
    dialect_reason: str = ""  # why that one (the report says it)
    # A family that scales one YAML to several models (a `scales:` table): the scale letter
    # used, how it was chosen ("name": from the file name, "flag": --scale, "first": none
    # given, the table's first; "only": its only row), in words for the report, and the
    # channel cap of that row.
    scale: str = ""
    scale_source: str = ""
    scale_reason: str = ""
    max_channels: float = math.inf
    # Other top-level keys the family's parser reads (e.g. `reg_max`), as validated values.
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    @property
    def na(self) -> int:
        """Anchors per level, as YOLOv5 derives it (0 for an anchor-free YAML)."""
        if isinstance(self.anchors, tuple):
            return len(self.anchors[0]) // 2 if self.anchors else 0
        return self.anchors
