"""YD1xx: the YAML and its spec. The spec reader refuses unreadable input itself (YD100-YD105,
documented here); the checks below read the ModelSpec and parse_model's channel plan, no torch
forward. The blocks' channel rules and classes (YD106, YD110, YD111) are in checks/blocks.py."""

from __future__ import annotations

from collections.abc import Iterator

from yolodiag.checks.engine import Facts
from yolodiag.findings import (
    Edit,
    Fix,
    Location,
    Problem,
    Severity,
    Stage,
    check,
    describe,
    written,
)
from yolodiag.spec import Symbol

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

describe("YD100", "yaml-unreadable", E, Stage.SPEC, refuses=True, doc="""
    What it detects:
        A file that is not YAML, not a mapping, or that uses a `!!python/...` tag. The message
        names the line and column where the parser stopped. (Characters outside ASCII are
        dropped first, as YOLOv5 drops them: YD112.)
    Why it zeroes P and R:
        YOLOv5 would not start training at all; yolodiag stops here too (exit code 2).
    Why it is an error:
        Input refused: YOLOv5's yaml.safe_load raises the same way, so nothing can train
        (exit code 2).
    Example:
        backbone: [[-1, 1, Conv, [64, 6, 2, 2]]
    Fix:
        Fix the YAML syntax at the named line; remove Python tags.
    """)

describe("YD101", "missing-key", E, Stage.SPEC, refuses=True, doc="""
    What it detects:
        A top-level key YOLOv5 requires is missing or of the wrong type: `nc`, `anchors`,
        `backbone`, `head`, `depth_multiple`, `width_multiple` (parse_model reads all of them).
    Why it zeroes P and R:
        YOLOv5 crashes with a KeyError before training; yolodiag stops with exit code 2.
    Why it is an error:
        Input refused: parse_model raises KeyError before the first layer is built (exit
        code 2).
    Example:
        depth_multiple: 1.0  # and no width_multiple line
    Fix:
        Add the key; `depth_multiple: 1.0` and `width_multiple: 1.0` keep the YAML as written.
    """)

describe("YD102", "malformed-layer", E, Stage.SPEC, refuses=True, doc="""
    What it detects:
        A layer row that is not `[from, number, module, args]`: wrong length, `from` not an
        integer or list of integers, `number` not an integer >= 1, `args` not a list.
    Why it zeroes P and R:
        YOLOv5 fails to unpack the row; nothing trains. yolodiag stops with exit code 2.
    Why it is an error:
        Input refused: parse_model cannot unpack the row and raises (exit code 2).
    Example:
        [-1, Conv, [64, 3, 2]]
    Fix:
        Write the row as `[from, number, module, [args]]`, e.g. `[-1, 1, Conv, [64, 3, 2]]`.
    """)

describe("YD103", "unknown-module", E, Stage.SPEC, refuses=True, doc="""
    What it detects:
        A module name that is in no table: not a YOLOv5 v7.0 module, not `nn.*`, not a class
        defined in a --modules file. The hint suggests close names.
    Why it zeroes P and R:
        YOLOv5's eval raises NameError; nothing trains. yolodiag stops with exit code 2.
    Why it is an error:
        Input refused: parse_model's eval raises NameError on the name (exit code 2).
    Example:
        [-1, 1, Cnov, [64, 3, 2]]
    Fix:
        Correct the spelling. Your own blocks: --modules FILE.py (its classes join the table).
    """)

describe("YD104", "bad-from-index", E, Stage.SPEC, refuses=True, doc="""
    What it detects:
        A `from` index that points to the layer itself, to a later layer, or before layer 0.
    Why it zeroes P and R:
        YOLOv5 indexes a list that does not hold that layer yet and crashes (or, for negative
        indices, silently wraps around to a wrong layer). yolodiag stops with exit code 2.
    Why it is an error:
        Input refused: the build raises IndexError or wires a layer that does not exist yet
        (exit code 2).
    Example:
        [[-1, 7], 1, Concat, [1]]  # at layer 6
    Fix:
        Point `from` to an earlier layer: -1 for the previous one, or an absolute index.
    """)

describe("YD105", "unsafe-expression", E, Stage.SPEC, refuses=True, doc="""
    What it detects:
        A string YOLOv5 would pass to Python's eval (module names, arguments, `activation:`)
        that is not `nc`, `anchors`, `None`, a number, a known string literal such as
        'nearest', or a known activation call such as `nn.LeakyReLU(0.1)`.
    Why it zeroes P and R:
        Such a string runs arbitrary code in YOLOv5. yolodiag never evaluates it and stops
        with exit code 2.
    Why it is an error:
        Input refused: yolodiag never evaluates such a string, and YOLOv5 would run it as
        code (exit code 2).
    Example:
        [-1, 1, Conv, [__import__('os').getcwd(), 3, 2]]
    Fix:
        Write plain values: numbers, `nc`, `anchors`, `None`, 'nearest', `nn.SiLU()`.
    """)

def stride_argument(cls: type, args: tuple) -> int | None:
    """The value a constructor receives for its `s`/`stride` parameter (default if not given);
    a pooling layer's stride defaults to its kernel size, as in torch."""
    from yolodiag.usermodules import constructor_parameters

    parameters = constructor_parameters(cls)
    names = [p.name for p in parameters]
    for name in ("s", "stride"):
        if name not in names:
            continue
        position = names.index(name)
        value = args[position] if position < len(args) else parameters[position].default
        if value is None and "kernel_size" in names:
            k = names.index("kernel_size")
            value = args[k] if k < len(args) else None
        value = value[0] if isinstance(value, (list, tuple)) and value else value
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None


@check("YD107", "repeat-on-non-repeating-module", W, Stage.SPEC, fixable="unsafe")
def repeat_on_non_repeating_module(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        `number > 1` on a module that does not take a repeat count (anything outside the C3 /
        BottleneckCSP family): YOLOv5 stacks that many copies built with the same arguments.
        An error when the copies change the width (the second copy receives c2 channels but
        was built for c1), a warning when each copy downsamples again (stride s per copy).
    Why it zeroes P and R:
        Mismatched copies crash the build. Strided copies shrink the map s^n times, so the
        Detect strides and the anchors no longer agree.
    Example:
        [-1, 2, Conv, [128, 3, 2]]
    Fix:
        Write one row per distinct layer (the first one changing width or stride), then a row
        with `number` copies that keep both, e.g. `[-1, 1, Conv, [128, 3, 2]]` and
        `[-1, 2, BasicBlock, [128]]`.
    """
    for planned in facts.plan:
        done = planned.done
        if done is None or done.copies < 2:
            continue
        index, module = planned.row.index, planned.row.module
        stride = stride_argument(planned.entry.load(), done.args)
        split = _split_fix(facts, planned, stride)
        if planned.entry.rule == "channels" and done.args[0] != done.args[1]:
            yield Problem(
                f"{done.copies} copies of {module}{list(done.args)} are stacked: the first "
                f"turns {done.args[0]} channels into {done.args[1]}, so copy 2 receives "
                f"{done.args[1]} channels but was built for {done.args[0]}",
                f"split the row: one {module} that changes the width, then the repeats",
                facts.where(index), {"copies": done.copies, "c1": done.args[0],
                                     "c2": done.args[1]}, severity=E, fix=split)
            continue
        if stride and stride > 1:
            yield Problem(
                f"{done.copies} copies of {module} with stride {stride} are stacked: together "
                f"they downsample by {stride ** done.copies}, not {stride}",
                f"split the row: one strided {module}, then {done.copies - 1} with stride 1",
                facts.where(index), {"copies": done.copies, "stride": stride}, fix=split)


def _split_fix(facts: Facts, planned, stride: int | None) -> Fix | None:
    """One row that changes width and stride, then the copies, which keep both (their
    stride argument made 1): unsafe where that changes the downsampling as written."""
    from yolodiag.usermodules import constructor_parameters

    row, copies = planned.row, planned.done.copies
    names = [p.name for p in constructor_parameters(planned.entry.load())]
    inserted = len(planned.done.args) - len(row.args)  # c1, which the channel rule adds
    position = next((names.index(n) - inserted for n in ("s", "stride") if n in names), None)
    args = [written(a) for a in row.args]
    rest = list(args)
    if stride and stride > 1:
        if position is None or not 0 <= position < len(args):
            return None
        rest[position] = 1
    first = [written(row.from_), 1, row.module, args]
    return Fix(f"layer {row.index} split: one {row.module} {args}, then {copies - 1} with "
               f"{rest}", (Edit("split", row.index, (first, [-1, copies - 1, row.module, rest])),),
               "unsafe" if stride and stride > 1 else "safe")



@check("YD108", "depth-multiple-drops-repeats", INFO, Stage.SPEC)
def depth_multiple_drops_repeats(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        Rows whose `number` is changed by `depth_multiple` (Python's round: round(2 * 0.33) is
        1) on modules stacked as copies (not the C3 family, whose repeats YOLOv5 scales by
        design): the built network is not the one written, e.g. a ResNet-18 with one
        BasicBlock per stage instead of two.
    Why it zeroes P and R:
        It does not by itself; it explains why the model is shallower (or deeper) than the
        architecture copied into the YAML, and why checkpoints of that architecture do not fit.
    Example:
        depth_multiple: 0.33
        [-1, 2, Bottleneck, [32]]
    Fix:
        Set `depth_multiple: 1.0`, or write the number of blocks you want after scaling.
    """
    changed = [p for p in facts.plan
               if p.row.number > 1 and p.entry.rule != "channels+repeats"
               and p.number != p.row.number]
    if not changed:
        return
    rows = ", ".join(f"layer {p.row.index} {p.row.module} {p.row.number} -> {p.number}"
                     for p in changed)
    yield Problem(
        f"depth_multiple {facts.spec.depth_multiple} changes the number of stacked blocks: "
        f"{rows}",
        "set depth_multiple: 1.0 or write the block counts you want after scaling",
        facts.where(changed[0].row.index),
        {"layers": [p.row.index for p in changed], "written": [p.row.number for p in changed],
         "built": [p.number for p in changed]})


@check("YD109", "nc-mismatch", E, Stage.SPEC, fixable="safe")
def nc_mismatch(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        The Detect (or Segment) row's class count is a number other than the model's `nc`
        (write `nc` there), or, with --data, other than the data's class count. With --data
        also: data.yaml's `nc` differs from the length of its `names` (YOLOv5 v7.0 then
        trains len(names) classes). A model YAML `nc` other than the data's is no problem:
        train.py builds the model with the data's, and so does yolodiag.
    Why it zeroes P and R:
        train.py overrides the model's `nc` from the data, but a number written into the
        Detect row is not overridden: the head predicts the wrong number of classes and the
        class targets land in the wrong outputs (or index past them).
    Why it is an error:
        Only where the Detect row holds fewer classes than are trained: YOLOv5's ComputeLoss
        writes each target's class into a row of the head's width and raises IndexError at
        the first batch holding a class id at or above it. A Detect row with more classes
        trains (the extra outputs only ever learn 'absent') and so does a data.yaml whose nc
        and names disagree (v7.0 trains len(names) classes): those are warnings.
    Example:
        [[7, 4], 1, Detect, [3, anchors]]
    Fix:
        Write `[[...], 1, Detect, [nc, anchors]]`; give data.yaml as many `names` as classes.
    """
    data = facts.data
    if data is not None and data.names and data.nc is not None and data.nc != len(data.names):
        yield Problem(
            f"{data.path}: nc is {data.nc} but names has {len(data.names)} entries: {facts.title} "
            f"v7.0 ignores nc and trains {len(data.names)} classes",
            "make nc equal to the number of names (or drop nc)",
            Location(str(data.path), data.lines.get("nc"), section="nc"),
            {"data_nc": data.nc, "names": len(data.names)}, W)
    for row in facts.spec.layers:
        if row.module not in facts.dialect.head_modules or not row.args:
            continue
        classes = row.args[0]
        trained = data.classes if data is not None else facts.spec.nc
        if isinstance(classes, Symbol) or classes == trained:
            continue
        whose = "the data's class count" if data is not None else "the model's nc"
        yield Problem(
            f"{row.module} is built for {classes!r} classes but {whose} is {trained}; "
            "train.py overrides nc, not this number",
            f"write `nc` as the first {row.module} argument", facts.where(row.index),
            {"detect_nc": classes, "nc": trained},
            None if not isinstance(classes, int) or classes < trained else W,
            fix=Fix(f"layer {row.index} {row.module} takes `nc` classes, not {classes!r}",
                    (Edit("arg", row.index, (0, "nc")),)))


@check("YD112", "non-ascii-dropped", INFO, Stage.SPEC)
def non_ascii_dropped(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        Characters outside ASCII in the YAML file: no-break spaces (U+00A0) in the
        indentation of a YAML pasted from a web page, full-width characters in a comment,
        bytes of another encoding. YOLOv5's yolo.py opens the model YAML as ASCII with
        errors ignored, so it reads the file as if those characters were not there, and so
        does yolodiag: the model checked is the one YOLOv5 builds. Reported when that changes
        the YAML's data (read as UTF-8 it would differ or not parse), not for characters in
        comments only, such as the rocket in every stock YAML's first line.
    Why it zeroes P and R:
        It does not by itself. Where a dropped character stood inside a value (a module name,
        a string argument), the value YOLOv5 reads differs from the one you see.
    Example:
        backbone:  # ResNet-18 骨干
    Fix:
        Nothing if the characters are in comments or indentation; otherwise retype the value
        in ASCII.
    """
    dropped = facts.spec.dropped
    if dropped is None or not dropped.changes_data:  # comments only: the same YAML
        return
    also = (f", {dropped.characters} in all on {dropped.lines} lines"
            if dropped.characters > 1 else "")
    yield Problem(
        f"{facts.title} reads the YAML as ASCII and drops every other character, as yolodiag does: "
        f"line {dropped.first_line} has {dropped.first_name}{also}",
        "nothing if they are in comments or indentation; retype a value that holds one",
        Location(file=facts.spec.path, line=dropped.first_line),
        {"line": dropped.first_line, "characters": dropped.characters,
         "lines": dropped.lines})
