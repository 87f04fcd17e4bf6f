"""Gradient-flow checks (YD601-YD607): read the GradFlow of one measured backward.

Thresholds are relative (to the median layer, or to the gradient arriving at a block), because
the gradients of a YOLO head and of its backbone differ by orders of magnitude in a healthy
model; their sources are in each check's documentation. Nothing here runs the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from yolodiag.checks.engine import Facts
from yolodiag.findings import Problem, Severity, Stage, check
from yolodiag.shapes import consecutive_runs

# A layer's |grad|/|w| against the median layer's. On the 23 detection stock YAMLs at
# initialisation (gradflow's defaults: 256x256, batch 2, seed 0) the ratios span 1.25e-4
# (yolov5x6 layer 32, the C3 feeding its stride-64 level) to 256 (yolov5-p7 layer 1) times
# the median.
VANISHING = 1e-5
EXPLODING = 1e4
DEAD_UNITS = 0.5  # "most units": more than half of a layer's ReLU-family units dead


@check("YD601", "no-gradient", Severity.ERROR, Stage.GRAD)
def no_gradient(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        Layers whose parameters get no gradient, or an exactly zero one, from one real backward
        of YOLOv5's loss: something between them and the loss is detached (`.detach()`,
        `torch.no_grad()`, `.data`, a numpy round trip), or their output is never used.
        No threshold: the gradient is absent or exactly zero. When the gradient reaches a
        later layer's output but not the layers feeding it, that layer is named as where the
        flow stops. Parameters the caller had frozen are measured anyway and named apart.
    Why it zeroes P and R:
        Those layers keep their random initial weights for the whole training: every feature
        computed after them is built on noise, so the head learns nothing it can localise.
    Why it is an error:
        Measured by one real backward: layers with no gradient keep their random weights in
        every step, so what comes after them is trained on fixed noise.
    Example:
        [-1, 1, DetachingBlock, [32]],   # 2: forward starts with x = x.detach()
    Fix:
        Remove the `.detach()` / `no_grad` / `.data` from the block's forward (or wire the
        unused layer into the head). `yolodiag gradflow` afterwards shows a gradient for
        every layer.
    """
    grads = facts.grads
    silent = [layer for layer in grads.layers
              if [name for name in layer.silent if name not in layer.frozen]]
    for run in consecutive_runs([layer.index for layer in silent]):
        first, last = run[0], run[-1]
        names = ", ".join(f"{i} {grads.layer(i).module}" for i in run[:4])
        more = f" and {len(run) - 4} more" if len(run) > 4 else ""
        tensors = sum(len(grads.layer(i).silent) for i in run)
        weights = sum(grads.layer(i).params for i in run)
        stop = _where_flow_stops(facts, run)
        cause = (f"; the gradient reaches the output of layer {stop} "
                 f"{grads.layer(stop).module}, which passes none to its input"
                 if stop is not None else "")
        yield Problem(
            f"layer{'s' if len(run) > 1 else ''} {names}{more} got no gradient from the loss: "
            f"{tensors} parameter tensors ({weights:,} weights) have none or an "
            f"exactly zero one{cause}",
            f"find the `.detach()`, `torch.no_grad()` or `.data` in layer {stop}'s forward"
            if stop is not None else
            f"check that layer {last}'s output is used by the head (see YD203)",
            facts.where(first),
            {"layers": run, "stops_at": stop})
    frozen = [layer.index for layer in grads.layers if layer.frozen]
    if frozen:
        yield Problem(
            f"layers {', '.join(map(str, frozen))} have frozen parameters (requires_grad "
            "False); they were measured as if trainable, but will not train",
            f"unfreeze them unless freezing is intended ({facts.possessive} --freeze)",
            facts.where(frozen[0]), {"layers": frozen}, Severity.WARNING)


def _where_flow_stops(facts: Facts, run: list[int]) -> int | None:
    """The first later layer that reads one of `run` and whose output got gradient."""
    grads = facts.grads
    for layer in grads.layers:
        if layer.index <= run[-1] or not layer.output_grad:
            continue
        if set(facts.spec.layers[layer.index].sources) & set(run):
            return layer.index
    return None


@check("YD602", "nonfinite-gradient", Severity.ERROR, Stage.GRAD)
def nonfinite_gradient(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A NaN or Inf in the loss or in any parameter gradient of one real backward. It names
        the first layer, in forward order, whose output holds a non-finite value (the cause
        is usually there: a division by zero, a log or sqrt of a non-positive value, an
        overflow); when every output was finite, the layer nearest the loss whose gradient is
        not (the backward goes from the head to the stem).
    Why it zeroes P and R:
        One NaN gradient makes the optimizer write NaN into the weights; from then on every
        prediction is NaN, NMS keeps nothing, and precision, recall and mAP are zero while
        the logged loss shows `nan`.
    Why it is an error:
        Measured by one real backward: the first optimiser step writes NaN into the weights,
        and from then on every prediction is NaN.
    Example:
        [-1, 1, NanBlock, [32]],   # 2: forward divides by a zero norm
    Fix:
        Guard the named layer's operation: add an epsilon to divisors and norms, clamp before
        log, exp and sqrt.
    """
    grads = facts.grads
    if grads.finite:
        return
    bad = [layer.index for layer in grads.layers if layer.nonfinite]
    loss = ", ".join(f"{name} {value:.3g}" for name, value in grads.loss.items())
    if grads.first_nonfinite is not None:
        where = grads.first_nonfinite
        origin = (f"; the forward first produces a non-finite value in layer {where} "
                  f"{grads.layer(where).module}")
    elif bad:
        where = bad[-1]
        origin = (f"; every output was finite, and the backward first turns non-finite in "
                  f"layer {where} {grads.layer(where).module}")
    else:
        where, origin = None, ""
    yield Problem(
        f"loss {loss}; {len(bad)} of {len(grads.layers)} layers have NaN or Inf gradients"
        f"{origin}",
        "guard that layer's arithmetic (epsilon in divisions and norms, clamp before log/exp)",
        facts.where(where), {"layers": bad, "first_nonfinite_output": grads.first_nonfinite})


def _ratios(facts: Facts, above: bool) -> Iterator[Problem]:
    grads = facts.grads
    median = grads.median_ratio
    if not grads.finite or not median:
        return
    bound = EXPLODING if above else VANISHING
    # A ratio of 0 is no gradient at all: YD601 says so, and where the flow stops.
    outliers = [layer for layer in grads.layers if layer.ratio and (
        layer.ratio > bound * median if above else layer.ratio < bound * median)]
    by_stage: dict[int | None, list] = {}
    for layer in outliers:
        by_stage.setdefault(layer.stride, []).append(layer)
    for stride, layers in by_stage.items():
        stage = f"stride {stride}" if stride is not None else "the head"
        listed = ", ".join(f"layer {layer.index} {layer.module} {layer.ratio:.2g} "
                           f"({layer.ratio / median:.1g}x)" for layer in layers[:4])
        more = f" and {len(layers) - 4} more" if len(layers) > 4 else ""
        yield Problem(
            f"|grad|/|w| at {stage}: {listed}{more}, against a median of {median:.2g} over "
            f"the model's layers ({'above' if above else 'below'} {bound:g}x the median)",
            ("scale the offending input or output, or put a BatchNorm after that convolution"
             if above else
             "look for a multiplication by a tiny constant, a saturated sigmoid/tanh or a "
             "missing normalisation before that layer"),
            facts.where(layers[0].index),
            {"layers": [layer.index for layer in layers], "stride": stride, "median": median,
             "ratios": [layer.ratio for layer in layers]})


@check("YD603", "vanishing-gradient", Severity.WARNING, Stage.GRAD)
def vanishing_gradient(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        Layers whose gradient, relative to their weights (|grad|/|w|, how far one SGD step
        moves them per unit of learning rate), is below 1e-5 times the median over the
        model's layers; one finding per stage (layers of one output stride). The bound is
        relative: LARS (You, Gitman & Ginsburg 2017, "Large Batch Training of Convolutional
        Networks") shows this ratio legitimately differs by orders of magnitude between the
        layers of a healthy network, and Glorot & Bengio (2010) define vanishing gradients
        by how the norm shrinks from the output towards the input, not by a fixed value. The
        factor comes from measurement: on the 23 detection stock YAMLs at initialisation the
        lowest ratio is 1.25e-4 times the median (yolov5x6's layer 32, the C3 that feeds its
        stride-64 level, which has few positives at 256x256), so 1e-5 keeps a margin of 12.
    Why it zeroes P and R:
        A layer 100,000 times slower than the rest stays at its random initialisation for
        the whole schedule; what it computes is noise for the layers after it.
    Example:
        [-1, 1, Rescaled, [32, 0.0001]],   # 2: a gain stored times 1e4, used times 1e-4
    Fix:
        Remove the tiny factor, put a BatchNorm after the convolution, avoid saturating
        activations (sigmoid, tanh) inside the backbone.
    """
    yield from _ratios(facts, above=False)


@check("YD604", "exploding-gradient", Severity.WARNING, Stage.GRAD)
def exploding_gradient(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        Layers whose |grad|/|w| is above 1e4 times the median over the model's layers; one
        finding per stage. Relative for the reasons given in YD603 (Pascanu, Mikolov & Bengio
        2013, "On the difficulty of training recurrent neural networks", describe exploding
        gradients as norms growing geometrically through the layers). On the 23 detection
        stock YAMLs at initialisation the highest ratio is 256 times the median (yolov5-p7's
        layer 1 Conv), so 1e4 keeps a margin of 40.
    Why it zeroes P and R:
        With YOLOv5's learning rate (lr0 0.01) such a layer jumps far in one step; its
        outputs and the BatchNorm statistics after it swing, the loss spikes or turns NaN
        (YD602), and the head never sees stable features.
    Example:
        [-1, 1, Rescaled, [32, 10000.0]],   # 2: a gain stored times 1e-4, used times 1e4
    Fix:
        Remove the large factor (often pixel values 0-255 where 0-1 is expected, or a
        missing division), or normalise the layer's input with a BatchNorm.
    """
    yield from _ratios(facts, above=True)


@check("YD605", "dead-activations", Severity.WARNING, Stage.GRAD)
def dead_activations(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A ReLU-family activation (ReLU, ReLU6, Hardswish; a module or a functional call inside
        a block) whose units are mostly dead: more than half of them output zero for every
        image and position of the batch. A unit is a channel of a feature map. Lu, Shin, Su
        & Karniadakis (2019, "Dying ReLU and Initialization") define a dead ReLU as one that
        outputs zero for every input; "most" (over 50 %) is the catalogue's bound.
    Why it zeroes P and R:
        A dead unit passes no gradient, so it never recovers; the layers after it see
        constant zeros in most channels and the head has little left to detect with.
    Example:
        [-1, 1, DeadReluBlock, [32]],   # 2: ReLU of its output minus 100 on 3/4 of the channels
    Fix:
        Remove the negative shift or bias, put a BatchNorm before the ReLU, or use an
        activation without a flat zero region (SiLU, YOLOv5's default; LeakyReLU).
    """
    for layer in facts.grads.layers:
        if layer.worst_activation is None:
            continue
        where, dead, units = layer.worst_activation
        if dead / units > DEAD_UNITS:
            yield Problem(
                f"layer {layer.index} {layer.module}: {dead} of {units} units ({dead / units:.0%})"
                f" of the ReLU-family activation in {where} are zero for every image and "
                "position of the batch",
                "put a BatchNorm before the activation, remove negative shifts, or use SiLU",
                facts.where(layer.index),
                {"module": where, "dead_units": dead, "units": units})


@check("YD606", "residual-path-dead", Severity.ERROR, Stage.GRAD)
def residual_path_dead(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A residual block whose shortcut carries no gradient back to the block's input
        (detached, multiplied by zero) while its branch does, measured by backpropagating the
        gradient the add received through each path alone (a block that passes nothing back
        through either path is YD601's); or a block that declares a shortcut (an
        attribute `shortcut`, `downsample` or `skip`, or YOLOv5's `add = True`) and whose
        forward adds nothing. A residual add is an add of two same-shaped maps of which at
        least one comes from the block's input. No threshold: the shortcut's part is absent
        or exactly zero. With an identity shortcut the gradient at the input is the branch's
        plus the add's own, dz/dx = dy/dx + 1 (He, Zhang, Ren & Sun 2016, "Identity Mappings
        in Deep Residual Networks"): that term is what this check looks for.
    Why it zeroes P and R:
        Without its shortcut a ResNet block is a plain stack: the `+ 1` term that keeps the
        gradient at the early layers at the head's scale is gone, and a model designed
        around residual blocks trains like a much deeper plain network, or not at all.
    Why it is an error:
        Measured by backpropagating through each path alone: the shortcut returns nothing,
        so the block trains as a plain stack and the layers before it get the gradient of a
        much deeper plain network.
    Example:
        [-1, 1, NoAddBlock, [32]],   # 2: a BasicBlock whose forward forgets out += shortcut
    Fix:
        Restore `out += self.shortcut(x)` (without `.detach()`) before the final activation.
    """
    grads = facts.grads
    for add in grads.adds:  # both paths silent: the block passes nothing back, that is YD601
        if add.measured and add.add_grad and add.branch_grad and not add.shortcut_grad:
            yield Problem(
                f"the shortcut of {add.block} ({add.block_type}) carries no gradient to the "
                f"block's input: {add.add_grad:.3g} arrives at its add, "
                f"{add.branch_grad:.3g} goes on through the branch and none through the "
                "shortcut",
                "add the block's input itself (no .detach(), no factor 0) to the branch output",
                facts.where(add.layer), {"block": add.block})
    for missing in grads.missing_adds:
        yield Problem(
            f"{missing.block} ({missing.block_type}) declares a shortcut "
            f"({missing.declared_by}) but its forward adds nothing: it is a plain block",
            "add the shortcut to the branch output in forward: `out += self.shortcut(x)`",
            facts.where(missing.layer), {"block": missing.block})


@check("YD607", "residual-gain", Severity.INFO, Stage.GRAD)
def residual_gain(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        The measured effect of the model's residual shortcuts: the same weights and batch run
        again with every shortcut removed (each residual add returns its branch alone), and
        the gradient norm at the earliest layers (those before the first residual block) is
        compared with and without them, also in units of the head's gradient of each run. A
        fact, not a fault: no threshold. Veit, Wilber & Belongie (2016, "Residual Networks
        Behave Like Ensembles of Relatively Shallow Networks") show the gradient of a ResNet
        flows mostly along short paths, the ones the shortcuts make. With a BatchNorm after
        every convolution a plain stack's gradient at initialisation tends to grow, not
        vanish, with depth (Yang et al. 2019, "A Mean Field Theory of Batch Normalization"),
        so the ratio can be below 1: the shortcuts then keep it at the head's scale.
    Why it zeroes P and R:
        It does not. It shows what the shortcuts do for this model, which tells whether a
        block edit that drops them (YD606) matters.
    Example:
        [-1, 2, C3, [32]],   # 2: Bottlenecks with shortcuts
    Fix:
        Nothing to fix. Compare the ratio before and after editing a backbone.
    """
    grads = facts.grads
    ablation = grads.ablation
    if grads.ablation_error:
        yield Problem(f"the model cannot run with its shortcuts removed "
                      f"({grads.ablation_error}); no comparison", "",
                      facts.where(min(a.layer for a in grads.adds)))
    if ablation is None or not grads.finite or ablation.ratio is None:
        return
    layers = ", ".join(f"{i} {grads.layer(i).module}" for i in ablation.layers)
    relative = ablation.ratio_to_head
    scale = (f"; in units of each run's head gradient {relative:.2f}x"
             if relative is not None and math.isfinite(relative) else "")
    yield Problem(
        f"with its {ablation.removed} residual shortcut{'s' if ablation.removed > 1 else ''}, "
        f"the earliest layers ({layers}) "
        f"receive {ablation.ratio:.2f}x the gradient of the same model with every shortcut "
        f"removed ({ablation.with_shortcuts:.3g} vs {ablation.without_shortcuts:.3g}){scale}",
        "", facts.where(ablation.layers[0]),
        {"ratio": ablation.ratio, "ratio_to_head": relative, "layers": list(ablation.layers)})
