"""YD306-YD308: what each level sees (receptive fields) and what the model costs, read from the
traced forwards."""

from __future__ import annotations

import math
from collections.abc import Iterator

from yolodiag.checks.anchors import levels_in_use
from yolodiag.checks.engine import Facts
from yolodiag.checks.geometry import head_inputs, slashed
from yolodiag.findings import Problem, Severity, Stage, check
from yolodiag.shapes import format_shape

W, INFO = Severity.WARNING, Severity.INFO


RECEPTIVE_FIELD_FRACTION = 0.5


@check("YD306", "receptive-field-small", W, Stage.TRACE, needs={"anchors"})
def receptive_field_small(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A Detect level whose theoretical receptive field (in input pixels, through every
        convolution and pooling kernel on the way; attention counts as global) is smaller
        than half the largest anchor side of that level. The theoretical field overstates
        what a network uses (the effective receptive field is a fraction of it, Luo et al.,
        NeurIPS 2016), yet stock yolov3-tiny trains well with a 318 px field for its 344 px
        anchor; below half, a cell at an object's centre cannot see even half its extent.
    Why it zeroes P and R:
        The level must predict boxes for objects far larger than anything its features see:
        box regression and objectness for the largest objects have nothing to go on.
    Example:
        anchors:
          - [10,13, 16,30, 33,23]  # P3/8
          - [200,200, 300,300, 400,400]  # 400 px anchors where layer 4 sees 79 px
    Fix:
        Deepen the path to that level (more 3x3 blocks, SPPF), or give it smaller anchors.
    """
    rows = levels_in_use(facts)
    size = facts.trace.sizes[0]
    if rows is None or not size.ok:
        return
    for level, (source, row) in enumerate(zip(head_inputs(facts), rows)):
        traced = size.layer(source)
        field = traced.receptive_field if traced else None
        largest = max(row)
        if field is not None and field < largest * RECEPTIVE_FIELD_FRACTION:
            yield Problem(
                f"level {level} (layer {source}) sees {field:.0f} px of the input, less than half "
                f"its largest anchor ({largest:g} px)",
                "deepen the path to this level (more 3x3 blocks, "
                f"{facts.dialect.example('pooling')}) or use smaller anchors",
                facts.where(source), {"level": level, "receptive_field": field,
                                      "largest_anchor": largest})


BLOWUP = 2.0  # stock variants (P2, P6, seg heads, yolov3) stay below 1.6x


def stock_gflops(facts: Facts, width: float) -> float:
    """GFLOPs of the family's stock model at this width_multiple (log-linear between the stock
    widths, width-squared beyond them)."""
    points = sorted(facts.dialect.stock_gflops.items())
    if width <= points[0][0]:
        return points[0][1] * (width / points[0][0]) ** 2
    if width >= points[-1][0]:
        return points[-1][1] * (width / points[-1][0]) ** 2
    for (w0, g0), (w1, g1) in zip(points, points[1:]):
        if w0 <= width <= w1:
            t = (math.log(width) - math.log(w0)) / (math.log(w1) - math.log(w0))
            return math.exp(math.log(g0) + t * (math.log(g1) - math.log(g0)))
    raise AssertionError("unreachable")


@check("YD307", "compute-blowup", W, Stage.TRACE, needs={"stock-cost"})
def compute_blowup(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        GFLOPs at 640x640 more than twice those of stock YOLOv5 at the same width_multiple
        (4.6 / 16.6 / 49.2 / 109.6 / 206.3 for n / s / m / l / x), naming the layers that
        cost most, with their resolution: wide convolutions at full or half resolution. For a
        family with several stock models per width (Ultralytics), the stock model of the same
        family and scale (yolo11n: 6.7).
    Why it zeroes P and R:
        Not directly; it is the bill for a missing downsampling (the seed's recipe costs 115.8
        GFLOPs instead of 16.6), makes every epoch several times slower and forces smaller
        batches, which hurts BatchNorm.
    Example:
        width_multiple: 0.25
        [-1, 1, Conv, [256, 3, 1]]  # layers 0 and 1: wide, at full resolution
    Fix:
        Downsample before the wide layers (a stride-2 stem, strided stages), as stock YOLOv5.
    """
    sized = [s for s in facts.trace.ok_sizes if s.img == (640, 640)] or list(facts.trace.ok_sizes)
    if not sized:
        return
    size = sized[0]
    h, w = size.img
    total = size.gflops * (640 * 640) / (h * w)
    width = facts.spec.width_multiple
    if facts.dialect.stock_cost is not None:
        stock = facts.dialect.stock_cost(facts.spec)
        if stock is None:  # no stock model of this family and scale to compare with
            return
        reference, compared = stock
    else:
        reference = stock_gflops(facts, width)
        compared = f"stock {facts.title} at width_multiple {width:g}"
    if total <= BLOWUP * reference or reference <= 0:  # a width_multiple of 1e-300 underflows
        return
    scale = (640 * 640) / (h * w)
    top = sorted(size.layers, key=lambda layer: -layer.macs)[:3]
    parts = []
    for layer in top:
        g = layer.gflops * scale
        where = {1: "full resolution", 2: "half resolution"}.get(layer.stride,
                                                               f"stride {layer.stride}")
        module = facts.spec.layers[layer.index].module
        at = f"({format_shape(layer.out_shape)})" if layer.stride is None else \
            f"at {where} ({format_shape(layer.out_shape)})"
        parts.append(f"layer {layer.index} {module} {at}: {g:.1f} GFLOPs ({g / total:.0%})")
    yield Problem(
        f"{total:.1f} GFLOPs at 640x640, {total / reference:.1f}x the {reference:.1f} of "
        f"{compared}; most of it in " + ", ".join(parts),
        "downsample before the wide layers (stride-2 stem, strided stages) as stock "
        f"{facts.title} does",
        facts.where(top[0].index),
        {"gflops": round(total, 2), "stock_gflops": round(reference, 2),
         "ratio": round(total / reference, 2), "layers": [layer.index for layer in top]})


@check("YD308", "model-summary", INFO, Stage.TRACE, on_request=True)
def model_summary(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        Nothing wrong: the model's headline figures (layers, parameters, GFLOPs, strides,
        grids at each traced size) as one finding, for CI logs and SARIF viewers. The report's
        model table (text and JSON) carries the per-layer rows: from, n, module, args, output
        shape, stride, params, GFLOPs. On request only: `--select YD308`.
    Why it zeroes P and R:
        It does not; it is the figures to compare with what you meant to build.
    Example:
        yolodiag check model.yaml --select YD308
    Fix:
        Nothing to fix.
    """
    built = facts.built
    strides = slashed(built.stride) if built.stride else "unknown"
    grids = []
    for size in facts.trace.ok_sizes:
        maps = [size.layer(i) for i in head_inputs(facts)] if built.head_index else []
        cells = ", ".join(f"{m.out_shape[2]}x{m.out_shape[3]}" for m in maps if m and m.channels)
        grids.append(f"{cells} at {size.img[0]}x{size.img[1]}")
    first = facts.first_ok
    gflops = f"{first.gflops:.1f} GFLOPs at {first.img[0]}x{first.img[1]}" if first else ""
    yield Problem(
        f"{len(built.layers)} layers, {built.params:,} parameters, {gflops}; "
        f"{facts.head_module} strides "
        f"{strides}; grids {'; '.join(grids)}", "", facts.where(),
        {"layers": len(built.layers), "params": built.params,
         "gflops": round(first.gflops, 2) if first else None})
