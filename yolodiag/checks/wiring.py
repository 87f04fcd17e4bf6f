"""YD2xx: wiring and channels. Read the built layers, parse_model's channel plan and the
traced shapes; crashes are attributed through `crashes.py` so each defect is reported once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from yolodiag.analyses.crashes import built_for, feature_maps
from yolodiag.checks.engine import Facts
from yolodiag.checks.schema import stride_argument
from yolodiag.findings import Edit, Fix, Problem, Severity, Stage, check
from yolodiag.shapes import format_shape, format_sizes

if TYPE_CHECKING:
    from yolodiag.build.builder import LayerRecord
    from yolodiag.trace import LayerTrace, SizeTrace

E, W = Severity.ERROR, Severity.WARNING


@check("YD201", "channel-mismatch", E, Stage.BUILD)
def channel_mismatch(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A layer that receives C channels but was constructed for C'. parse_model decides
        every layer's input width from its own count of the earlier layers' widths; a module
        whose real output width differs from that count (a raw `nn.Conv2d`, a BatchNorm2d
        reading another layer than the previous one, a user block YOLOv5 treats as
        width-preserving) makes every later count wrong. Names the consumer that crashes, the
        layer it reads and the first layer whose real width differs from parse_model's count.
    Why it zeroes P and R:
        YOLOv5's build crashes in its stride probe ("expected input to have C' channels"), or
        later rows are built for widths they never get.
    Why it is an error:
        YOLOv5's own build fails: its stride probe raises the same RuntimeError (the golden
        builds and the live oracle reproduce each case), so nothing trains.
    Example:
        [-2, 1, nn.BatchNorm2d, []]
    Fix:
        Make the named layer produce the width parse_model counts (use channel-aware modules,
        or read the previous layer), or change the consumer's `from`.
    """
    for crash in facts.crashes:
        if crash.cause != "YD201":
            continue
        index = crash.layer
        received = tuple(m[1] for m in feature_maps(crash.in_shapes))
        expected = built_for(facts, index)
        row = facts.spec.layers[index]
        sources = row.sources
        origin = _first_miscounted_layer(facts, crash.sizes)
        cause = ""
        if origin is not None:
            record, real = facts.record(origin[0]), origin[1]
            cause = (f"; the count goes wrong at layer {record.index} {record.module}, which "
                     f"produces {real} channels while parse_model counts {record.channels_out}")
        yield Problem(
            f"layer {index} {row.module} was built for {_widths(expected)} input channels but "
            f"receives {_widths(received)} from layer {_widths(tuple(sources))}{cause}",
            "make that layer produce the width parse_model counts, or change this `from`",
            facts.where(index),
            {"consumer": index, "producers": sources, "built_for": list(expected),
             "received": list(received), "origin": origin[0] if origin else None})


def _widths(values: tuple[int, ...]) -> str:
    return str(values[0]) if len(values) == 1 else str(list(values))


def _first_miscounted_layer(facts: Facts, sizes) -> tuple[int, int] | None:
    """(layer, real width) of the first layer whose traced width is not parse_model's count."""
    for size in facts.trace.sizes if facts.trace else ():
        if size.img not in sizes:
            continue
        for layer in size.layers:
            real = layer.channels
            if real is not None and real != facts.record(layer.index).channels_out:
                return layer.index, real
    return None


@check("YD202", "build-failed", E, Stage.BUILD)
def build_failed(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A layer whose constructor raises on the arguments parse_model completes (the build
        stops there), or a forward that crashes in a layer for a reason no other check
        explains: YOLOv5's stride probe at 256x256 (so YOLOv5's build fails) or the forward at
        a tested image size. With --repo, your own YOLOv5 code failing to build or run the
        model. The message carries the layer and the exception.
    Why it zeroes P and R:
        Nothing trains: YOLOv5 stops with a traceback that names no cause in the YAML.
    Why it is an error:
        The build or the forward raises: train.py stops before the first step.
    Example:
        [-1, 1, Conv, [64, 3, 2, 1, 5]]
    Fix:
        Check the row's arguments against the module's constructor (here: groups must divide
        both widths) and the `from` indices and widths feeding it.
    """
    for crash in facts.crashes:
        if crash.cause is not None:
            continue
        row = facts.spec.layers[crash.layer]
        h, w = crash.sizes[0]
        during = (f"{facts.possessive} stride probe (its build) at {h}x{w}" if crash.in_probe
                  else f"the forward at {format_sizes(crash.sizes)}")
        yield Problem(
            f"{during} fails in layer {crash.layer} {row.module}: {crash.error}",
            "check the `from` indices and widths feeding this layer and its arguments",
            facts.where(crash.layer),
            {"error": crash.error, "sizes": [list(s) for s in crash.sizes],
             "operation": crash.failed_op})


@check("YD203", "unused-output", W, Stage.SPEC)
def unused_output(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A layer whose output nobody reads: the next layer does not read `-1` and no `from`
        names it. Usually an index left behind after inserting or deleting rows.
    Why it zeroes P and R:
        The layer is dead weight, and the layers that should have read it read something
        else: typically the head taps the wrong stage.
    Example:
        [[6, 4], 1, Detect, [nc, anchors]]  # layer 7 is left unread
    Fix:
        Point the intended consumer's `from` at the layer, or delete the row.
    """
    layers = facts.spec.layers
    read = {source for row in layers for source in row.sources}
    for row in layers[:-1]:
        if row.index not in read:
            yield Problem(
                f"nobody reads layer {row.index} {row.module}: layer {row.index + 1} reads "
                f"`from: {layers[row.index + 1].from_}` and no other `from` names it",
                f"point a `from` at layer {row.index}, or delete it", facts.where(row.index))


@check("YD204", "tap-skips-block", W, Stage.TRACE, fixable="safe")
def tap_skips_block(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A head `from` that taps layer i although layer i + 1 reads only layer i and keeps its
        resolution and width: a block that refines i. The head skips that block, as when the
        head's indices were written for a backbone with fewer rows (the seed's head taps the
        strided Convs at layers 4 and 6, not the BasicBlocks at 5 and 7).
    Why it zeroes P and R:
        The head reads features that skipped a whole stage of the backbone; those blocks get
        no gradient from that level, and the level sees shallower features than intended.
    Example:
        [[-1, 3], 1, Concat, [1]]  # layer 4 refines layer 3
    Fix:
        Point the `from` at the refining layer (i + 1), i.e. recount the backbone indices.
    """
    size = facts.first_ok
    if size is None:
        return
    layers = facts.spec.layers
    for row in layers:
        if row.section != "head" or isinstance(row.from_, int) and row.from_ == -1:
            continue
        read = set(row.sources)
        for i in sorted(read - {row.index - 1}):
            refiner = i + 1
            reads_only_i = layers[refiner].from_ in (-1, i)
            if refiner >= row.index or refiner in read or not reads_only_i:
                continue
            before, after = size.layer(i), size.layer(refiner)
            if before is None or after is None or before.channels is None \
                    or before.out_shape[1:] != after.out_shape[1:]:
                continue
            if not facts.built.layers[refiner].params or _aggregates_chain(facts, size, row, i):
                continue  # a parallel pooling branch, or an ELAN stack tapped at every stage
            yield Problem(
                f"layer {row.index} {row.module} taps layer {i} {layers[i].module}, but layer "
                f"{refiner} {layers[refiner].module} refines it at the same resolution and "
                f"width ({format_shape(after.out_shape)}); the head skips that block",
                f"tap layer {refiner} instead of {i} (recount the backbone indices)",
                facts.where(row.index), {"tapped": i, "refined_by": refiner},
                fix=Fix(f"layer {row.index} taps layer {refiner} instead of {i}",
                        (Edit("from", row.index, (i, refiner)),)))


def _aggregates_chain(facts: Facts, size, row, tapped: int) -> bool:
    """Whether `row` also reads a later layer of the chain that runs on from `tapped` at the
    same resolution: then tapping `tapped` is deliberate, one of several stages of that chain
    joined (YOLOv7's ELAN blocks written out as Conv and Concat rows), not a skipped block."""
    layers, read = facts.spec.layers, set(row.sources)
    shape = size.layer(tapped).out_shape[2:]
    k = tapped + 1
    while k < row.index and layers[k].from_ in (-1, k - 1):
        traced = size.layer(k)
        if traced is None or traced.channels is None or traced.out_shape[2:] != shape:
            return False
        if k in read and k > tapped + 1:
            return True
        k += 1
    return False


@check("YD205", "stride-arg-ignored", W, Stage.TRACE)
def stride_arg_ignored(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A layer built with a stride argument s > 1 whose output has its input's spatial size:
        the block accepts `stride` but never uses it (the seed's BasicBlock hard-codes
        `stride=1` in its convolutions).
    Why it zeroes P and R:
        It does not by itself. Every later map is s times larger than designed: the Detect
        strides silently become 4/8/16 instead of 8/16/32 and the compute grows by s^2; a
        Concat with a map that did downsample crashes (YD303, an error of its own).
    Why it is a warning:
        What the changed strides cost is measured under YD301 (`yolodiag explain YD301`): the
        same positives, a model that still memorises a batch, four times the cells and a
        lower objectness prior at the finest level, several times the compute.
    Example:
        [-1, 1, BasicBlock, [64, 2]]
    Fix:
        Pass the stride to the block's first convolution (and to its projection shortcut), or
        downsample with a strided Conv before the block.
    """
    size = facts.first_ok
    if size is None:
        return
    for record, stride, traced in ignored_strides(facts, size):
        h, w = traced.out_shape[2:]
        yield Problem(
            f"layer {record.index} {record.module} is given stride {stride} but its output "
            f"keeps its input's size {h}x{w} at {size.img[0]}x{size.img[1]}: the stride "
            "argument is ignored",
            "make the block's first convolution use the stride (and its shortcut), or "
            f"downsample with a strided {facts.dialect.example('block')} before it",
            facts.where(record.index),
            {"stride": stride, "in": feature_maps(traced.in_shapes)[0],
             "out": traced.out_shape})


def ignored_strides(facts: Facts, size: SizeTrace, last: int | None = None
                    ) -> Iterator[tuple[LayerRecord, int, LayerTrace]]:
    """(record, stride, traced layer) of every layer up to `last` that is given a stride > 1
    but whose output keeps its input's height and width at this size."""
    for record in facts.built.layers[:None if last is None else last + 1]:
        stride = stride_argument(facts.plan[record.index].entry.load(), record.args)
        traced = size.layer(record.index)
        if not stride or stride < 2 or traced is None or traced.channels is None:
            continue
        maps = feature_maps(traced.in_shapes)
        if maps and maps[0][2:] == traced.out_shape[2:]:
            yield record, stride, traced


@check("YD206", "shortcut-mismatch", E, Stage.TRACE)
def shortcut_mismatch(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A residual add inside a layer whose two branches have different shapes: a shortcut
        that keeps the input's width or size while the branch changes it (e.g. YOLOv5's
        GhostBottleneck with stride 1 and a new width), or a projection with the wrong stride
        or width. Caught whether torch refuses the add or broadcasts it silently.
    Why it zeroes P and R:
        The build crashes, or the broadcast adds a wrong tensor to every output of the block.
    Why it is an error:
        The add raises in YOLOv5's build (shapes that do not broadcast), or a broadcast adds
        one wrong tensor to every output of the block, which no training undoes.
    Example:
        [-1, 1, GhostBottleneck, [64, 3, 1]]
    Fix:
        Give the block a projection shortcut (1x1 conv with the block's stride and output
        width) when width or stride change, or keep width and stride constant in that block.
    """
    seen: dict[int, list] = {}
    for size in facts.trace.sizes:
        for add in size.adds:
            seen.setdefault(add.layer, []).append((size.img, add))
    for index, adds in sorted(seen.items()):
        img, add = adds[0]
        a, b = (format_shape(s) for s in add.shapes)
        outcome = "the forward crashes" if add.failed else "torch broadcasts them silently"
        yield Problem(
            f"layer {index} {facts.spec.layers[index].module} adds a {a} map to a {b} map at "
            f"{img[0]}x{img[1]}: {outcome}",
            "give the block a projection shortcut with its stride and output width, or keep "
            "width and stride constant in it", facts.where(index),
            {"shapes": [list(s) for s in add.shapes], "crashed": add.failed})
