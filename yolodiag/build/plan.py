"""The rule walk every dialect's parser shares: a module table, channel rules, and `plan`.

A model YAML's rows are completed one by one, as a YOLO family's `parse_model` does: the module
table names, per module, the class that builds it and the channel rule that completes its
arguments (input width inserted, output width scaled, repeats passed in...). The rules are the
dialect's (`Dialect.rules`); this module holds the types they share and the walk that applies
them. No torch here: rules are arithmetic on channel counts, so the spec stage and the checks
can use them without building anything.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from yolodiag.spec import Symbol

if TYPE_CHECKING:
    from yolodiag.dialects import Dialect
    from yolodiag.spec import LayerSpec, ModelSpec


@dataclass(frozen=True)
class ModuleEntry:
    """One YAML module name: where its class lives and how the dialect's parser completes its
    arguments."""

    name: str
    factory: str  # "package.module:attribute", imported at build time; a user file's path
    rule: str  # a key of the dialect's rules, or "custom" for a user's own rule function
    # A user's block (--modules): the class itself, how its rule was decided (see
    # usermodules.RuleSource) and, for rule "custom", the function that completes its row.
    cls: type | None = field(default=None, compare=False)
    decided: str = "table"  # "table": the dialect's own; "seed": added by the seed document
    custom: Callable | None = field(default=None, compare=False)
    # The yolo.py whose parse_model gave the rule (with the branch's line when unmapped).
    registered_by: str | None = field(default=None, compare=False)
    # A user's class named like a table entry: what differs from that entry's class, in words.
    differs: str | None = field(default=None, compare=False)

    def load(self) -> Any:
        if self.cls is not None:
            return self.cls
        module, _, attribute = self.factory.partition(":")
        return getattr(importlib.import_module(module), attribute)


def canonical_name(name: str) -> str:
    """`torch.nn.Upsample` and `nn.Upsample` are one class in every family's namespace (each
    imports `torch.nn as nn`): the table holds the `nn.` spelling."""
    return "nn." + name[len("torch.nn."):] if name.startswith("torch.nn.") else name


class RuleError(ValueError):
    """The YAML row cannot be completed the way the family's parser would (it would crash)."""


@dataclass(frozen=True)
class RuleInput:
    """What `parse_model` knows when it reaches a row.

    `ch` is the parser's channel list at that point: for layer 0 it is `[input channels]`, later the
    output widths of all earlier layers, so `ch[f]` follows Python indexing exactly as there.
    `previous_c2` is the output width parse_model carries over from the previous row: modules
    whose rule does not set one (BatchNorm2d, the detection heads) keep it.
    """

    args: tuple[Any, ...]
    from_: int | tuple[int, ...]
    ch: tuple[int, ...]
    number: int
    width_multiple: float
    no: int
    previous_c2: int
    # A family with a scales table: the channel cap and the scale letter of the build, its
    # other top-level keys (spec.options) and the module names of the rows before this one
    # (a parser that keeps state across rows, as Ultralytics' for its head's layout), and this
    # row's module name (a parser that adjusts one class's arguments by name).
    max_channels: float = math.inf
    scale: str = ""
    options: tuple[tuple[str, Any], ...] = ()
    earlier: tuple[str, ...] = ()
    module: str = ""


@dataclass(frozen=True)
class Completion:
    """The constructor arguments, output width and stacked copies the parser arrives at.
    `keywords` are decisions the parser makes about the built object rather than its
    arguments (an attribute it sets after construction), passed to the constructor by name."""

    args: tuple[Any, ...]
    c2: int
    copies: int
    keywords: tuple[tuple[str, Any], ...] = ()


Rule = Callable[[RuleInput], Completion]


def make_divisible(x: float, divisor: int) -> int:
    """Smallest multiple of `divisor` that is >= x (scaled widths are rounded up to 8)."""
    return math.ceil(x / divisor) * divisor


@dataclass(frozen=True)
class PlannedRow:
    """One row as parse_model completes it, before any class is instantiated.

    `inputs` are the widths parse_model believes the row receives (`ch[f]` per source; for
    layer 0 the image channels). `done` is None when the rule failed; `error` says why, and no
    later row is planned (the real parser would have crashed here).
    """

    row: LayerSpec
    entry: ModuleEntry
    number: int  # after depth_multiple
    args: tuple[Any, ...]  # the YAML's arguments with nc and anchors substituted
    inputs: tuple[int, ...]
    done: Completion | None
    error: RuleError | None = None


def scaled_number(number: int, depth_multiple: float) -> int:
    """Repeats after depth_multiple, with Python's round, as the parsers: round(2 * 0.33) == 1."""
    return max(round(number * depth_multiple), 1) if number > 1 else number


def plan(spec: ModelSpec, dialect: Dialect, extra: dict[str, ModuleEntry] | None = None,
         nc: int | None = None) -> list[PlannedRow]:
    """parse_model's walk over the rows: each row's completed arguments and output width, by
    the dialect's table (and `extra`, the user's blocks) and rules."""
    nc = nc or spec.nc
    table = {**dialect.modules, **(extra or {})}
    anchors = [list(row) for row in spec.anchors] if isinstance(spec.anchors, tuple) else (
        spec.anchors)
    no = dialect.head_outputs(spec, nc)
    ch: list[int] = [spec.ch]
    c2 = spec.ch
    planned: list[PlannedRow] = []
    for row in spec.layers:
        entry = table[row.module]
        number = scaled_number(row.number, spec.depth_multiple)
        args = tuple(_substitute(a, nc, anchors) for a in row.args)
        sources = (row.from_,) if isinstance(row.from_, int) else row.from_
        inputs = tuple(ch[f] if -len(ch) <= f < len(ch) else 0 for f in sources)
        try:
            rule = entry.custom or dialect.rules[entry.rule]
            done = rule(RuleInput(args, row.from_, tuple(ch), number, spec.width_multiple, no,
                                  c2, spec.max_channels, spec.scale, spec.options,
                                  tuple(p.row.module for p in planned), row.module))
        except Exception as e:  # arithmetic on the YAML's values: the real parser would crash too
            error = e if isinstance(e, RuleError) else RuleError(f"{type(e).__name__}: {e}")
            planned.append(PlannedRow(row, entry, number, args, inputs, None, error))
            break
        planned.append(PlannedRow(row, entry, number, args, inputs, done))
        c2 = done.c2
        if row.index == 0:
            ch = []
        ch.append(c2)
    return planned


def _substitute(value: Any, nc: int, anchors: Any) -> Any:
    """Spec values -> constructor values: symbols looked up, nested tuples as lists."""
    if isinstance(value, Symbol):
        return nc if value.name == "nc" else anchors
    if isinstance(value, tuple):
        return [_substitute(v, nc, anchors) for v in value]
    return value
