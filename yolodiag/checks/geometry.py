"""YD301-YD305: strides and grids, read from the traced forwards at every image size (the
receptive fields and the cost, YD306-YD308, are in checks/cost.py)."""

from __future__ import annotations

import math
from collections.abc import Iterator

from yolodiag.analyses.crashes import feature_maps
from yolodiag.checks.anchors import designed_stride, levels_in_use
from yolodiag.checks.engine import Facts
from yolodiag.checks.wiring import ignored_strides
from yolodiag.findings import Edit, Fix, Problem, Severity, Stage, check
from yolodiag.shapes import format_sizes, plain_number

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


def slashed(values) -> str:
    return "/".join(str(plain_number(v)) for v in values)


def head_inputs(facts: Facts) -> list[int]:
    return list(facts.spec.layers[facts.built.head_index].sources)


@check("YD301", "detect-stride-nonstandard", W, Stage.TRACE,
       needs={"anchors", "objectness"}, fixable="unsafe")
def detect_stride_nonstandard(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        Detect levels whose measured strides differ from the strides their anchor rows were
        designed for. YOLOv5's default rows are recognised exactly (P3/8, P4/16, P5/32, P6/64,
        P7/128, yolov3-tiny's P4/16 and P5/32, at 640, 1280 and 1920); a user's own row is
        matched to the default row of the nearest size (within 1.5x); `anchors: N` rows are
        fitted to the data by AutoAnchor and not judged. Names where downsampling went missing
        (stride-1 stem, ignored stride; else where the backbone downsamples) and the cost.
    Why it zeroes P and R:
        It does not by itself; it makes the model slower to train and far more expensive.
        YOLOv5 matches anchors to targets in pixels, so the same targets get the same anchors
        at any stride. A level at stride 4 has four times the cells of one at 8, its
        objectness prior (YOLOv5's bias init) starts four times lower, at 3.1e-4, below
        val.py's conf 0.001 (no box from it until training lifts it), and the compute grows
        with the cells (YD307).
    Why it is a warning:
        Measured on the seed recipe (strides 4/8/16) against the same recipe done right
        (8/16/32) on ../shared/golden/data/shapes: YOLOv5's assignment gives both exactly the
        same positives (0, 90 and 306 per level on the 16 train images at 640); both memorise
        one batch (`yolodiag overfit`, batch 2: the seed passes at step 250, the fixed recipe
        at 180); real train.py runs of both end near zero after 3 epochs (mAP@0.5 0.0029 and
        0.0056: 6 iterations, all inside train.py's 100-iteration warm-up), and after 100
        epochs from scratch the seed reaches a best mAP@0.5 of 0.096, the fixed recipe 0.035
        (tests/data/runs). The seed costs 4.4x the GFLOPs (113 vs 26 at 640), no zero P and R.
    Example:
        [-1, 1, Conv, [16, 3, 1]]  # 0: a stride-1 stem
    Fix:
        Restore the missing downsampling (a stride-2 stem such as `[-1, 1, Conv, [64, 6, 2, 2]]`,
        or a block that honours its stride), so the Detect inputs are at 8/16/32; or use
        anchors designed for the strides you have (`anchors: 3` lets AutoAnchor fit them).
    """
    rows = levels_in_use(facts)
    strides = facts.built.stride
    if rows is None or len(rows) != len(strides):
        return
    designs = [designed_stride(facts, row) for row in rows]
    wrong = [level for level, (s, (d, _)) in enumerate(zip(strides, designs))
             if d is not None and s != d]
    if not wrong:
        return
    default = all(designs[level][1] for level in wrong)
    expected = [d for d, _ in designs]
    whose = f"{facts.possessive} default rows" if default else f"sized like {facts.possessive} rows"
    culprits, hint = missing_downsampling(facts, strides, expected)
    objectness_prior = facts.dialect.model.objectness_prior

    priors = [objectness_prior(s) for s in strides]
    starts = "/".join(f"{p:.2g}" for p in priors)
    designed = "/".join(f"{objectness_prior(d):.2g}" for d in expected if d is not None)
    conf = facts.dialect.evaluation.CONF  # validation's: boxes below it never reach NMS
    below = [slashed([s]) for s, p in zip(strides, priors) if p < conf]
    shows = (f" (the stride {'/'.join(below)} objectness alone starts below val.py's conf "
             f"{conf:g}: validation sees no box from there until training lifts it)"
             if below else "")
    yield Problem(
        f"{facts.head_module} level strides are {slashed(strides)}, but its anchors are {whose} "
        f"designed for {'/'.join('?' if d is None else str(d) for d in expected)}{culprits}. "
        f"What it costs (targets still get the same anchors: {facts.title} matches them in "
        "pixels): "
        f"objectness priors start at {starts} instead of {designed}{shows}, "
        "and the compute grows with the cells (YD307)",
        hint, facts.where(facts.built.head_index),
        {"strides": [plain_number(s) for s in strides], "designed_for": expected,
         "default_anchors": default, "levels": wrong, "objectness_priors": priors},
        fix=stem_fix(facts))


def stem_fix(facts: Facts) -> Fix | None:
    """The family's stock stride-2 stem for a stride-1 layer 0 of the same module, when that
    is the only downsampling missing before the head: unsafe (it changes the architecture's
    strides, which is the point)."""
    import yaml

    size = facts.first_ok
    stem = size.layer(0) if size is not None else None
    row = facts.spec.layers[0]
    if stem is None or stem.stride != 1 or list(ignored_strides(facts, size,
                                                               last=min(head_inputs(facts)))):
        return None
    stock = yaml.safe_load(facts.dialect.example("stem").strip("`"))
    if not (isinstance(stock, list) and len(stock) == 4 and stock[2] == row.module
            and row.args and isinstance(row.args[0], int)):
        return None
    args = [row.args[0], *stock[3][1:]]
    return Fix(f"layer 0 becomes a stride-2 stem, {row.module} {args}",
               (Edit("field", 0, ("args", args)),), "unsafe")


def missing_downsampling(facts: Facts, strides, expected) -> tuple[str, str]:
    size = facts.first_ok
    first_input = min(head_inputs(facts))
    if size is None or not any(d is not None and s < d for s, d in zip(strides, expected)):
        return "", "use anchors designed for these strides, or `anchors: 3` (AutoAnchor)"
    found, hints = [], []
    stem = size.layer(0)
    if stem is not None and stem.stride == 1:
        found.append(f"layer 0 {facts.spec.layers[0].module} is a stride-1 stem (stock "
                     f"{facts.title} stems downsample by 2)")
        hints.append(f"make layer 0 a stride-2 stem, e.g. {facts.dialect.example('stem')}")
    for record, stride, _ in ignored_strides(facts, size, last=first_input):
        found.append(f"layer {record.index} {record.module} ignores its stride {stride}")
        hints.append(f"make layer {record.index} honour its stride")
    if not found:
        steps = [f"{layer.index} (to {layer.stride})" for prev, layer in
                 zip(size.layers, size.layers[1:first_input + 1])
                 if layer.stride and prev.stride and layer.stride > prev.stride]
        found.append("the backbone downsamples only at layers " + ", ".join(steps))
        hints.append("add the missing stride-2 layer")
    return "; downsampling went missing: " + "; ".join(found), "; ".join(hints)


@check("YD302", "detect-stride-order", E, Stage.BUILD, fixable="safe")
def detect_stride_order(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        Detect strides (as YOLOv5's 256x256 probe measures them) that are not strictly
        increasing, are duplicated, or are not integers.
    Why it zeroes P and R:
        YOLOv5 pairs anchors with levels by the stride order and decodes boxes with the
        stride: duplicated or fractional strides put predictions at the wrong positions.
    Why it is an error:
        YOLOv5 decodes each level with its measured stride and pairs it with an anchor row
        by stride order: two levels with one stride predict the same cells, and a fractional
        stride (a map that does not divide 256) puts every decoded box of that level off its
        cell.
    Example:
        [[4, 7], 1, Detect, [nc, anchors]]  # a /16 level before a /8 one
    Fix:
        List the Detect inputs from the finest map to the coarsest (P3, P4, P5), each half the
        resolution of the previous one, with sizes that divide 256.
    """
    strides = facts.built.stride
    if not strides:
        return
    problems = []
    if any(not float(s).is_integer() for s in strides):
        problems.append("not all integers")
    if len(set(strides)) < len(strides):
        problems.append("duplicated")
    if any(b <= a for a, b in zip(strides, strides[1:])):
        problems.append("not increasing")
    if problems:
        yield Problem(
            f"{facts.head_module} strides {slashed(strides)} are {' and '.join(problems)}",
            f"list the {facts.head_module} inputs from the finest map to the coarsest, each half "
            "the size",
            facts.where(facts.built.head_index), {"strides": [plain_number(s) for s in strides]},
            fix=_reordered_inputs(facts, strides) if problems == ["not increasing"] else None)


def _reordered_inputs(facts: Facts, strides) -> Fix | None:
    """The head's inputs ordered by their stride, where each is one distinct level."""
    row = facts.spec.layers[facts.built.head_index]
    inputs = list(row.from_) if isinstance(row.from_, tuple) else [row.from_]
    if len(inputs) != len(strides):
        return None  # several inputs per level (YOLOv7's IAuxDetect): not certain
    ordered = [e for _, e in sorted(zip(strides, inputs))]
    return Fix(f"layer {row.index} {row.module} reads {ordered}, finest first",
               (Edit("field", row.index, ("from", ordered)),))


@check("YD303", "concat-spatial-mismatch", E, Stage.TRACE)
def concat_spatial_mismatch(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A Concat whose inputs differ in height or width at some tested image size (640, 320,
        384x640 and every --img): usually a `from` index pointing to the wrong stage, or a
        missing Upsample.
    Why it zeroes P and R:
        torch.cat refuses the maps: YOLOv5's build (or training at that size) crashes.
    Why it is an error:
        torch.cat raises at that image size: YOLOv5's build (at 256x256) or training and
        validation at that size crash.
    Example:
        [[-1, 4], 1, Concat, [1]]  # a /8 map with a /16 map
    Fix:
        Point `from` at a layer of the same resolution, or upsample/downsample first.
    """
    for crash in facts.crashes:
        if crash.cause != "YD303":
            continue
        row = facts.spec.layers[crash.layer]
        maps = feature_maps(crash.in_shapes)
        h, w = crash.sizes[0]
        yield Problem(
            f"layer {crash.layer} {row.module} joins maps of "
            f"{' and '.join(f'{m[2]}x{m[3]}' for m in maps)} from layers {_sources(row)} "
            f"at {h}x{w}" + (f" (fails at {format_sizes(crash.sizes[1:])} too)"
                             if len(crash.sizes) > 1 else ""),
            "point `from` at layers of the same resolution, or resample one of them",
            facts.where(crash.layer),
            {"shapes": maps, "sizes": [list(s) for s in crash.sizes]})


def _sources(row) -> str:
    return ", ".join(map(str, row.sources))


@check("YD304", "grid-shape-mismatch", E, Stage.TRACE)
def grid_shape_mismatch(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A Detect level whose grid is not (H/s, W/s) for its stride s at a tested size:
        padding-free convolutions or odd crops shift the map by a few cells.
    Why it zeroes P and R:
        YOLOv5 decodes cell (i, j) as ((j + offset) * s, (i + offset) * s): with a grid a few
        cells short, every box is shifted, and the targets are built for cells that do not
        line up with the features.
    Why it is an error:
        Targets are placed by the map's own grid (x * nx) but decoded with the stride ((j +
        offset) * s): with nx * s != W every decoded box is displaced, by up to the missing
        cells times the stride at the far edge, so boxes away from the origin never reach
        IoU 0.5.
    Example:
        [-1, 1, Conv, [64, 3, 1, 0]]  # no padding before a Detect input
    Fix:
        Use 'same' padding (YOLOv5's Conv does by default) on every layer feeding the head.
    """
    strides = facts.built.stride
    if not strides:
        return
    inputs = head_inputs(facts)
    for size in facts.trace.ok_sizes:
        h, w = size.img
        for level, (source, s) in enumerate(zip(inputs, strides)):
            traced = size.layer(source)
            if traced is None or traced.channels is None:
                continue
            grid = tuple(traced.out_shape[2:])
            expected = (h / s, w / s)
            if grid != expected:
                stride, (eh, ew) = plain_number(s), map(plain_number, expected)
                yield Problem(
                    f"level {level} (layer {source}, stride {stride}) has a {grid[0]}x{grid[1]} "
                    f"grid at {h}x{w}; stride {stride} needs {eh}x{ew}",
                    "use 'same' padding on every layer feeding this level",
                    facts.where(source), {"level": level, "img": [h, w], "grid": list(grid),
                                          "expected": [expected[0], expected[1]]})
                return


def grid_size(facts: Facts) -> int:
    """YOLOv5's check_img_size divisor: the largest stride, at least 32."""
    strides = facts.built.stride if facts.built else None
    return max(int(max(strides)), 32) if strides else 32


@check("YD305", "img-size-not-multiple", W, Stage.BUILD)
def img_size_not_multiple(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        An --img size that is not a multiple of the model's largest stride (at least 32).
        YOLOv5's check_img_size silently rounds it up; yolodiag traces the rounded size.
    Why it zeroes P and R:
        It does not by itself; training and validation run at another size than asked, and
        anchors fitted for the asked size are off by that ratio.
    Example:
        yolodiag check model.yaml --img 300
    Fix:
        Ask for a multiple of the largest stride (e.g. 320 for stride 32, 384 for stride 128).
    """
    gs = grid_size(facts)
    for h, w in facts.requested_sizes:
        if h % gs or w % gs:
            rounded = (math.ceil(h / gs) * gs, math.ceil(w / gs) * gs)
            yield Problem(
                f"--img {h}x{w} is not a multiple of the largest stride {gs}: {facts.title} "
                f"rounds it up to {rounded[0]}x{rounded[1]}, which is what was traced",
                f"use a multiple of {gs}", facts.where(),
                {"requested": [h, w], "traced": list(rounded), "multiple": gs})
