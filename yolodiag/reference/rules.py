"""Channel rules: how YOLOv5 v7.0's `parse_model` completes a layer's arguments.

YOLOv5 decides per module class whether a layer gets its input width inserted as `c1` and its
output width scaled by `width_multiple`, whether it receives the repeat count, or whether its
YAML arguments pass through untouched while the parser assumes the output width equals the
input width. Each rule here is one of those behaviours as a small pure function; the module
table (`table.py`) names the rule next to every module, and `plan` walks a whole ModelSpec the
way parse_model does. No torch here: rules are arithmetic on channel counts, so the spec stage
and the checks can use them without building anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from yolodiag.spec import Symbol

if TYPE_CHECKING:
    from yolodiag.reference.table import ModuleEntry
    from yolodiag.spec import LayerSpec, ModelSpec


class RuleError(ValueError):
    """The YAML row cannot be completed the way YOLOv5 would (YOLOv5 itself would crash)."""


@dataclass(frozen=True)
class RuleInput:
    """What `parse_model` knows when it reaches a row.

    `ch` is YOLOv5's channel list at that point: for layer 0 it is `[input channels]`, later the
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


@dataclass(frozen=True)
class Completion:
    """The constructor arguments, output width and number of stacked copies YOLOv5 arrives at."""

    args: tuple[Any, ...]
    c2: int
    copies: int


Rule = Callable[[RuleInput], Completion]


def make_divisible(x: float, divisor: int) -> int:
    """Smallest multiple of `divisor` that is >= x (YOLOv5 rounds every scaled width up to 8)."""
    return math.ceil(x / divisor) * divisor


def _single_input(r: RuleInput) -> int:
    if not isinstance(r.from_, int):
        raise RuleError(f"takes one input, but `from` is a list {list(r.from_)}")
    return r.ch[r.from_]


def _scaled_width(r: RuleInput) -> int:
    if not r.args:
        raise RuleError("needs the output channels as its first argument, got no arguments")
    c2 = r.args[0]
    if isinstance(c2, bool) or not isinstance(c2, (int, float)):
        raise RuleError(f"first argument must be the output channels, got {c2!r}")
    # YOLOv5 leaves a width equal to the Detect output size alone (a conv producing `no` maps).
    return c2 if c2 == r.no else make_divisible(c2 * r.width_multiple, 8)


def channels(r: RuleInput) -> Completion:
    """Channel-aware: args become `(c1, c2 * width_multiple, *rest)`; `number` copies stacked."""
    c1 = _single_input(r)
    c2 = _scaled_width(r)
    return Completion((c1, c2, *r.args[1:]), c2, r.number)


def channels_repeats(r: RuleInput) -> Completion:
    """Channel-aware and takes the repeat count as its third argument (C3, BottleneckCSP...)."""
    done = channels(r)
    args = (*done.args[:2], r.number, *done.args[2:])
    return Completion(args, done.c2, 1)


def passthrough(r: RuleInput) -> Completion:
    """YOLOv5's fallback for any other module: raw args, output width assumed equal to the input."""
    return Completion(r.args, _single_input(r), r.number)


def out_args0(r: RuleInput) -> Completion:
    """Raw args, output width is `args[0]` as written (not width-scaled)."""
    _single_input(r)
    if not r.args or not isinstance(r.args[0], int):
        raise RuleError("needs the output channels as its first argument")
    return Completion(r.args, r.args[0], r.number)


def input_width(r: RuleInput) -> Completion:
    """Width-preserving blocks that need their input width (attention: CBAM(channels, r)):
    args become `(c1, *args)`, output width = input width."""
    c1 = _single_input(r)
    return Completion((c1, *r.args), c1, r.number)


def batchnorm(r: RuleInput) -> Completion:
    """nn.BatchNorm2d: args become `[c1]`; parse_model does not update c2 for it (kept as is)."""
    return Completion((_single_input(r),), r.previous_c2, r.number)


def _input_widths(r: RuleInput) -> list[int]:
    if isinstance(r.from_, int):
        raise RuleError(f"takes a list of inputs, but `from` is the single index {r.from_}")
    return [r.ch[f] for f in r.from_]


def concat_sum(r: RuleInput) -> Completion:
    """Concat: output width is the sum of the input widths."""
    return Completion(r.args, sum(_input_widths(r)), r.number)


def concat_max(r: RuleInput) -> Completion:
    """Weighted-sum style nodes (BiFPN): output width is the widest input."""
    return Completion(r.args, max(_input_widths(r)), r.number)


def detect(r: RuleInput) -> Completion:
    """Detect: the input widths are appended; `anchors: N` becomes N placeholder pairs per level."""
    widths = _input_widths(r)
    args = list(r.args)
    if len(args) < 2:
        raise RuleError("needs `[nc, anchors]` as arguments")
    if isinstance(args[1], int) and not isinstance(args[1], bool):
        args[1] = [list(range(args[1] * 2))] * len(widths)
    args.append(widths)
    return Completion(tuple(args), r.previous_c2, r.number)


def segment(r: RuleInput) -> Completion:
    """Segment: as Detect, and the prototype width `args[3]` is width-scaled."""
    done = detect(r)
    args = list(done.args)
    if len(args) < 5:
        raise RuleError("needs `[nc, anchors, masks, protos]` as arguments")
    args[3] = make_divisible(args[3] * r.width_multiple, 8)
    return replace(done, args=tuple(args))


def contract(r: RuleInput) -> Completion:
    """Space-to-depth by `gain`: width grows by gain**2."""
    gain = r.args[0] if r.args else 2
    return Completion(r.args, _single_input(r) * gain**2, r.number)


def expand(r: RuleInput) -> Completion:
    """Depth-to-space by `gain`: width shrinks by gain**2."""
    gain = r.args[0] if r.args else 2
    return Completion(r.args, _single_input(r) // gain**2, r.number)


RULES: dict[str, Rule] = {
    "channels": channels,
    "channels+repeats": channels_repeats,
    "passthrough": passthrough,
    "out=args0": out_args0,
    "input": input_width,
    "batchnorm": batchnorm,
    "concat-sum": concat_sum,
    "concat-max": concat_max,
    "detect": detect,
    "segment": segment,
    "contract": contract,
    "expand": expand,
}


@dataclass(frozen=True)
class PlannedRow:
    """One row as parse_model completes it, before any class is instantiated.

    `inputs` are the widths parse_model believes the row receives (`ch[f]` per source; for
    layer 0 the image channels). `done` is None when the rule failed; `error` says why, and no
    later row is planned (YOLOv5 would have crashed here).
    """

    row: LayerSpec
    entry: ModuleEntry
    number: int  # after depth_multiple
    args: tuple[Any, ...]  # the YAML's arguments with nc and anchors substituted
    inputs: tuple[int, ...]
    done: Completion | None
    error: RuleError | None = None


def scaled_number(number: int, depth_multiple: float) -> int:
    """Repeats after depth_multiple, with Python's round as YOLOv5: round(2 * 0.33) == 1."""
    return max(round(number * depth_multiple), 1) if number > 1 else number


def plan(spec: ModelSpec, table: dict[str, ModuleEntry], nc: int | None = None) -> list[PlannedRow]:
    """parse_model's walk over the rows: each row's completed arguments and output width."""
    nc = nc or spec.nc
    anchors = [list(row) for row in spec.anchors] if isinstance(spec.anchors, tuple) else (
        spec.anchors)
    no = spec.na * (nc + 5)
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
            rule = entry.custom or RULES[entry.rule]
            done = rule(RuleInput(args, row.from_, tuple(ch), number, spec.width_multiple, no,
                                  c2))
        except Exception as e:  # arithmetic on the YAML's values: YOLOv5 would crash here too
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
