"""YD4xx: anchors against the strides, as YOLOv5's build and target assignment use them.

YOLOv5's default anchor rows (the stock model YAMLs and `models/hub/anchors.yaml` of v7.0) are
facts we can recognise: each was designed for one stride. Rows given as `anchors: N` are
placeholders that AutoAnchor replaces from the data before training, so only their count is
checked here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from yolodiag.checks.engine import Facts
from yolodiag.findings import Edit, Fix, Problem, Severity, Stage, check
from yolodiag.shapes import plain_number

E, W = Severity.ERROR, Severity.WARNING

def row_size(row: tuple[float, ...]) -> float:
    """Geometric mean of sqrt(w * h) over a row's anchors: one size per row, in its units."""
    areas = [row[i] * row[i + 1] for i in range(0, len(row) - 1, 2)]
    return math.exp(sum(math.log(max(a, 1e-12)) / 2 for a in areas) / len(areas))


def default_grid_sizes(facts: Facts) -> list[float]:
    """Grid-unit sizes of the family's default rows at their design strides (YOLOv5: 1.5, the
    yolov3-tiny P4/16 row, to 14.5)."""
    return [row_size(row) / stride for row, stride in facts.dialect.default_anchors.items()]


def designed_stride(facts: Facts, row: tuple[float, ...]) -> tuple[int | None, bool]:
    """(stride the row was designed for, whether it is one of the family's own rows).

    A default row is recognised exactly. A user's row is matched to the default row of the
    nearest size when within a factor 1.5 (same scale, refitted), else its design is unknown.
    """
    defaults = facts.dialect.default_anchors
    exact = defaults.get(tuple(row))
    if exact is not None:
        return exact, True
    if any(value <= 0 for value in row):  # YD403's business
        return None, False
    size = row_size(row)
    if not defaults:
        return None, False
    nearest = min(defaults.items(), key=lambda kv: abs(math.log(row_size(kv[0]) / size)))
    if abs(math.log(row_size(nearest[0]) / size)) <= math.log(1.5):
        return nearest[1], False
    return None, False


def levels_in_use(facts: Facts) -> list[tuple[float, ...]] | None:
    """The anchor rows in the order Detect uses them (YOLOv5 flips them against the strides),
    in pixels; None for `anchors: N` or without measured strides."""
    anchors = facts.spec.anchors
    if not isinstance(anchors, tuple) or facts.built is None or facts.built.stride is None:
        return None
    return list(reversed(anchors)) if facts.built.anchors_flipped else list(anchors)


@check("YD401", "anchor-level-count", E, Stage.SPEC, needs={"anchors"})
def anchor_level_count(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        The number of anchor rows differs from the number of Detect inputs, a row has an odd
        number of values, or rows have different lengths.
    Why it zeroes P and R:
        YOLOv5 builds one output per anchor row: extra inputs are never predicted from, a
        missing row crashes its build, and odd or ragged rows crash the anchor reshape.
    Why it is an error:
        YOLOv5's Detect reshapes the anchors into one row per input: a missing row or a
        ragged one raises in the build; an extra input is never predicted from.
    Example:
        anchors:
          - [10,13, 16,30, 33,23]  # P3/8
          - [30,61, 62,45, 59,119]  # P4/16
          - [116,90, 156,198, 373,326]  # a third row for two Detect inputs
    Fix:
        Give one `[w,h, w,h, ...]` row per Detect input, all with the same number of pairs.
    """
    anchors = facts.spec.anchors
    if not isinstance(anchors, tuple):
        return
    where = facts.key_location("anchors")
    lengths = [len(row) for row in anchors]
    odd = [i for i, n in enumerate(lengths) if n % 2]
    if odd:
        yield Problem(f"anchor rows {odd} have an odd number of values {[lengths[i] for i in odd]}"
                      "; each anchor is a width and a height",
                      "write each row as w,h pairs", where, {"rows": odd})
    elif len(set(lengths)) > 1:
        yield Problem(f"anchor rows have different numbers of anchors: {[n // 2 for n in lengths]}",
                      "give every level the same number of anchors", where,
                      {"anchors_per_row": [n // 2 for n in lengths]})
    for row in facts.spec.layers:
        per_row = facts.dialect.head_inputs_per_row.get(row.module, 1)
        if row.module in facts.dialect.head_modules and not isinstance(row.from_, int) \
                and len(row.from_) != len(anchors) * per_row:
            inputs = "one row per input" if per_row == 1 else f"one row per {per_row} inputs"
            yield Problem(
                f"{row.module} reads {len(row.from_)} layers {list(row.from_)} but there are "
                f"{len(anchors)} anchor rows: {facts.title} needs {inputs}",
                f"add or remove anchor rows (or {row.module} inputs) so that they match",
                facts.where(row.index), {"inputs": len(row.from_), "rows": len(anchors)})


@check("YD402", "anchor-order", W, Stage.BUILD, needs={"anchors"}, fixable="safe")
def anchor_order(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        Anchor rows not ordered like the Detect strides (small anchors for the fine level
        first). YOLOv5 compares only the mean anchor areas of the first and last rows and flips
        the whole list silently; a row out of order in the middle stays where it is. YOLOv7
        compares the areas of the very first and very last anchor, and flips also when the two
        are equal.
    Why it zeroes P and R:
        After a flip the model differs from the YAML without a word; a middle row out of order
        sends large objects to a fine level and small ones to a coarse level.
    Example:
        anchors:
          - [30,61, 62,45, 59,119]  # P4/16
          - [10,13, 16,30, 33,23]  # P3/8
    Fix:
        Order the rows from the smallest anchors (finest stride) to the largest.
    """
    anchors = facts.spec.anchors
    strides = facts.built.stride
    if not isinstance(anchors, tuple) or strides is None or len(anchors) != len(strides) \
            or len(anchors) < 2 or any(value <= 0 for row in anchors for value in row):
        return
    sizes = [round(row_size(row), 1) for row in anchors]
    increasing = strides[-1] > strides[0]
    ordered = all((b > a) == increasing for a, b in zip(sizes, sizes[1:]))
    if ordered:
        return
    flipped = facts.built.anchors_flipped
    rule = getattr(facts.dialect.model, "ANCHOR_ORDER_RULE", "it compares only the first and last")
    what = (f"{facts.title} flips the rows silently ({rule})" + (
            ", and the order is still wrong"
            if not all((b > a) == increasing for a, b in zip(sizes[::-1], sizes[-2::-1])) else "")
            if flipped else f"{facts.title} keeps them as they are ({rule})")
    yield Problem(
        f"anchor row sizes {sizes} (pixels) are not ordered like the strides "
        f"{[plain_number(s) for s in strides]}: {what}",
        "order the anchor rows from the smallest anchors (finest stride) to the largest",
        facts.key_location("anchors"), {"row_sizes": sizes, "flipped": flipped},
        fix=Fix("anchor rows ordered from the smallest to the largest",
                (Edit("key", "anchors", [list(r) for r in sorted(
                    anchors, key=row_size, reverse=not increasing)]),)))


@check("YD403", "anchor-stride-mismatch", W, Stage.BUILD, needs={"anchors"},
       fixable="safe")
def anchor_stride_mismatch(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A level whose anchors, in grid cells of its stride, are far from any size YOLOv5's
        assignment can match to the objects that level normally handles. YOLOv5's default
        rows span 1.5 to 14.5 cells (geometric-mean size); a target matches an anchor only
        when neither side differs by more than `anchor_t` (4), so a row outside
        [1.5 / 4, 14.5 * 4] cells cannot match the objects any default row matches there.
        The usual cause: anchors copied in grid units (from `model[-1].anchors`) into a YAML
        that expects pixels, or pixel anchors for another image size.
    Why it zeroes P and R:
        Objects of ordinary sizes get no positive anchor at that level: no box or class
        signal, and objectness is trained to "nothing" there.
    Example:
        anchors:
          - [1.25,1.625, 2,3.75, 4.125,2.875]
    Fix:
        Write anchors in pixels at the training image size, or use `anchors: 3` and let
        AutoAnchor fit them to the data.
    """
    rows = levels_in_use(facts)
    if rows is None or len(rows) != len(facts.built.stride):
        return
    for level, row in enumerate(rows):
        if any(value <= 0 for value in row):
            yield Problem(
                f"level {level} has anchor sizes that are not positive {list(row)}: "
                f"{facts.possessive} width and height ratios are meaningless for them and no "
                "target matches",
                "write positive pixel sizes", facts.key_location("anchors"),
                {"level": level, "row": list(row)}, severity=E)
    sizes = default_grid_sizes(facts)
    if not sizes:
        return
    low, high = min(sizes) / facts.anchor_t, max(sizes) * facts.anchor_t
    for level, (row, stride) in enumerate(zip(rows, facts.built.stride)):
        if any(value <= 0 for value in row):
            continue  # reported above
        cells = row_size(row) / stride
        if low <= cells <= high:
            continue
        yield Problem(
            f"level {level} (stride {plain_number(stride)}) anchors average {cells:.2f} grid cells "
            f"({row_size(row):.1f} px): outside the {low:.2f}-{high:.1f} cells {facts.possessive} "
            f"assignment (anchor_t {facts.anchor_t:g}) can match to this level's usual objects",
            "write anchors in pixels at the training size, or use `anchors: 3` (AutoAnchor)",
            facts.key_location("anchors"),
            {"level": level, "stride": stride, "grid_cells": round(cells, 3)},
            fix=_in_pixels(facts, rows, low, high))


def _in_pixels(facts: Facts, rows, low: float, high: float) -> Fix | None:
    """Every row times its level's stride, where the rows were written in grid cells: each
    then lands inside the matchable range and none did before."""
    strides = facts.built.stride
    if facts.spec.anchors != tuple(map(tuple, rows)) or any(
            row_size(row) / s >= low for row, s in zip(rows, strides)):
        return None
    pixels = [[plain_number(v * s) for v in row] for row, s in zip(rows, strides)]
    if not all(low <= row_size(row) / s <= high for row, s in zip(pixels, strides)):
        return None
    return Fix("anchors written in pixels (each row times its level's stride)",
               (Edit("key", "anchors", pixels),))


@check("YD404", "no-target-matched", E, Stage.TRACE, needs={"anchors", "loss"})
def no_target_matched(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        YOLOv5's own target assignment (a target takes an anchor when neither side differs by
        `anchor_t` = 4 or more, plus up to two neighbouring cells), run on a synthetic batch of
        16 images with objects of the sizes the model's levels are built for (from 2 cells of
        the finest level to 8 cells of the coarsest, at most 0.6 of the image: 16 to 256 px
        for P3-P5 at 640; aspect up to 2.5), gives zero positives at some level or leaves
        targets matched by no anchor at all. Reports positives per level and the fraction of
        unmatched targets. `anchors: N` placeholders (AutoAnchor refits them) are not judged.
        With --data the train split's labels are assigned instead (its first 512 images,
        letterboxed to the first --img size without augmentation); a level without positives
        is then no finding (the data may hold no objects of its size), unmatched labels are.
    Why it zeroes P and R:
        A target with no positive anchor contributes no box and no class loss, and its cells
        are trained as background: the model learns to see nothing there, so recall for such
        objects is exactly zero. A level with zero positives only ever learns "no object".
    Why it is an error:
        Measured by YOLOv5's own assignment (build_targets): a target with no positive
        anchor adds nothing to the box or class loss and its cells are trained as
        background, so its recall is exactly zero however long the model trains.
    Example:
        anchors:
          - [1.25,1.625, 2,3.75, 4.125,2.875]  # grid units, not pixels
    Fix:
        Write anchors in pixels at the training image size (grid units times the stride), or
        use `anchors: 3` so that AutoAnchor fits them to the data.
    """
    stats = facts.assignment
    if stats is None:
        return
    # The synthetic batch has objects for every level; a dataset need not (all large objects
    # leave P3 without positives, rightly): there only unmatched labels cost recall.
    empty = [level for level, n in enumerate(stats.positives)
             if n == 0 and stats.source == "synthetic"]
    unmatched = len(stats.unmatched)
    if not empty and not unmatched:
        return
    sides = sorted(stats.target_sides[i] for i in stats.unmatched)
    parts = []
    if unmatched:
        parts.append(f"{unmatched} of {stats.targets} targets ({unmatched / stats.targets:.0%}, "
                     f"{sides[0]:g}-{sides[-1]:g} px) match no anchor at any level")
    if empty:
        strides = ", ".join(str(plain_number(stats.strides[i])) for i in empty)
        parts.append(f"level{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty))} "
                     f"(stride {strides}) get no positive")
    h, w = stats.img
    batch = ("a synthetic batch" if stats.source == "synthetic" else
             f"the {stats.images} {stats.source} images of --data, letterboxed,")
    yield Problem(
        f"{facts.possessive} assignment of {batch} at {h}x{w}: " + "; ".join(parts)
        + f" (positives per level {list(stats.positives)})",
        "write anchors in pixels at the training size, or use `anchors: 3` (AutoAnchor)",
        facts.key_location("anchors"),
        {"unmatched": unmatched, "targets": stats.targets,
         "unmatched_fraction": round(unmatched / stats.targets, 4), "empty_levels": empty,
         "positives_per_level": list(stats.positives)})
