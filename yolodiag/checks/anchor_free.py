"""YD309-YD311: what only an anchor-free head needs checked: its strides against the family's
stock designs, the box sides its distribution bins can reach (DFL), and the class scores a fresh
head starts with against validation's confidence threshold. Each reads the measured strides and
the dialect's model part (`class_prior`, `largest_box_side`, `head_facts`); none names a class.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from yolodiag.checks.engine import Facts
from yolodiag.checks.geometry import missing_downsampling, slashed, stem_fix
from yolodiag.findings import Problem, Severity, Stage, check
from yolodiag.shapes import plain_number

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO
TRAIN_SIZE = 640  # the image side the families train at by default


def stock_design(facts: Facts, strides) -> tuple[int, ...] | None:
    """The family's stock stride design with as many levels as the head, nearest to the
    measured strides (None when no stock head has that many levels)."""
    designs = [d for d in facts.dialect.stock_strides if len(d) == len(strides)]
    if not designs:
        return None
    return min(designs, key=lambda d: sum(abs(math.log2(s / x)) for s, x in zip(strides, d)
                                          if s > 0))


@check("YD309", "head-stride-nonstandard", W, Stage.TRACE, needs={"stock-strides"},
       fixable="unsafe")
def head_stride_nonstandard(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        An anchor-free head whose measured strides are none of the family's stock designs
        (Ultralytics: P3-P5 8/16/32, P2 4/8/16/32, P6 8/16/32/64, and v3-tiny's 16/32), with
        the nearest design and where the downsampling went missing (a stride-1 stem, a block
        that ignores its stride, else the layers that downsample).
    Why it zeroes P and R:
        Not by itself: the assigner matches targets to cells at any stride. It is what
        produces the two that do: every class prior starts lower (4x fewer pixels per cell,
        YD311), and the coarsest level regresses shorter sides (YD310); the model also costs
        several times the compute (YD307).
    Why it is a warning:
        Such a head can train; the measured harm is in YD310 and YD311, which say whether it
        applies to this model.
    Example:
        - [-1, 1, Conv, [64, 1]]  # 0: a stride-1 stem (the seed's recipe)
    Fix:
        Restore the stock downsampling (a stride-2 stem `[-1, 1, Conv, [64, 3, 2]]`, strided
        stages) so the head reads P3/8, P4/16 and P5/32.
    """
    strides = facts.built.stride
    if not strides or tuple(plain_number(s) for s in strides) in facts.dialect.stock_strides:
        return
    design = stock_design(facts, strides)
    culprits, hint = missing_downsampling(facts, strides, design or [None] * len(strides))
    expected = slashed(design) if design else "a stock design"
    yield Problem(
        f"{facts.head_module} strides are {slashed(strides)}, not {facts.possessive} stock "
        f"{expected}{culprits}",
        hint if design else "read the stock strides off the family's YAMLs",
        facts.where(facts.built.head_index),
        {"strides": [plain_number(s) for s in strides], "stock": list(design or ())},
        fix=stem_fix(facts) if design else None)


def _head(facts: Facts) -> dict:
    return facts.dialect.model.head_facts(facts.built) if facts.built.stride else {}


@check("YD310", "dfl-range-short", W, Stage.TRACE, needs={"dfl"})
def dfl_range_short(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A head whose distribution bins cannot reach the box sides of large objects at the
        training size: each side's distance from a cell centre is the expectation over
        reg_max bins, 0 to reg_max - 1 strides, so a level regresses sides up to
        2 x (reg_max - 1) x stride pixels. With reg_max 16 and a coarsest stride of 16 that
        is 480 px: objects over 480 px at 640 (75% of the image) cannot be represented.
    Why it zeroes P and R:
        For those objects only: the box loss trains towards a clamped target, the predicted
        box stays smaller than the object, and its IoU can stay below 0.5 (no true positive).
    Why it is a warning:
        Only large objects are lost; a dataset of small objects is unaffected.
    Example:
        - [-1, 1, Conv, [64, 1]]  # 0: a stride-1 stem (the seed's recipe)
        - [[2, 3, 4], 1, Detect, [nc]]  # strides 4/8/16
    Fix:
        Give the head a stride-32 level (restore the downsampling, YD309), or raise `reg_max`
        (more bins: every box-branch output grows with it).
    """
    head = _head(facts)
    reg_max = head.get("reg_max")
    if not reg_max or not facts.built.stride:
        return
    reach = [facts.dialect.model.largest_box_side(s, reg_max) for s in facts.built.stride]
    if any(r is None for r in reach):
        return
    longest = max(reach)
    if longest >= TRAIN_SIZE:
        return
    coarsest = max(facts.built.stride)
    yield Problem(
        f"with reg_max {reg_max} the coarsest level (stride {plain_number(coarsest)}) regresses "
        f"box sides up to 2 x {reg_max - 1} x {plain_number(coarsest)} = {longest:g} px: objects "
        f"larger than {longest:g} px at {TRAIN_SIZE} ({longest / TRAIN_SIZE:.0%} of the image) "
        "cannot be represented",
        "give the head a stride-32 level (restore the downsampling), or raise reg_max",
        facts.where(facts.built.head_index),
        {"reg_max": reg_max, "largest_side": longest, "image": TRAIN_SIZE,
         "strides": [plain_number(s) for s in facts.built.stride]})


@check("YD311", "class-prior-below-conf", W, Stage.TRACE, needs={"class-prior"})
def class_prior_below_conf(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A fresh head whose class scores start below validation's confidence threshold at
        every level: the bias prior is sigmoid(log(5 / nc / (640 / stride)^2)), the expected
        score of a cell at 640 for 5 objects per image, against conf 0.001 (Ultralytics'
        validator). A warning when the head's strides cause it (the stock strides would give
        a level above it); information when the class count alone does (nc above ~12 at
        stride 32).
    Why it zeroes P and R:
        The validator's NMS drops every box below conf: until training lifts the scores, it
        sees no box at all, and P, R and mAP read exactly 0 (the seed's recipe at strides
        4/8/16 and nc 4 starts at 7.8e-4).
    Why it is a warning:
        Training lifts the scores within the first epochs when the model can learn; what it
        costs is the early validations and the confusion they cause. Ultralytics' own
        advice: zero metrics at the start are normal.
    Example:
        nc: 4
        - [[2, 3, 4], 1, Detect, [nc]]  # strides 4/8/16
    Fix:
        Restore the stock strides (YD309); judge the first epochs by the losses, not P and R.
    """
    strides = facts.built.stride
    if not strides:
        return
    model = facts.dialect.model
    conf = model.VALIDATION_CONF
    nc = facts.built.nc
    priors = [model.class_prior(s, nc) for s in strides]
    if max(priors) >= conf:
        return
    design = stock_design(facts, strides) or ()
    stock = [model.class_prior(s, nc) for s in design]
    caused = bool(stock) and max(stock) >= conf
    best = max(range(len(priors)), key=priors.__getitem__)
    message = (f"at initialisation the largest class prior is {priors[best]:.1e} (stride "
               f"{plain_number(strides[best])}, nc {nc}), below validation's conf {conf:g}: a "
               "fresh model gives 0 boxes; P and R read 0 until training lifts it")
    if caused:
        message += (f"; the stock strides {slashed(design)} would start at "
                    f"{max(stock):.1e}")
    else:
        message += f" (at the stock strides too, for {nc} classes)"
    yield Problem(
        message,
        "restore the stock strides (YD309)" if caused else
        "judge the first epochs by the losses, not by P and R",
        facts.where(facts.built.head_index),
        {"priors": priors, "conf": conf, "nc": nc, "stock_priors": stock,
         "caused_by_strides": caused},
        severity=None if caused else INFO)
