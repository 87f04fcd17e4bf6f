"""Overfit checks (YD701-YD706): read the OverfitHistory of one batch trained to memorise.

A sound model memorises one batch; these checks say which way one did not: the loss did not
fall, it fell but the predictions stayed wrong, train mode was right but eval mode was not,
values turned non-finite, or nothing ever reached the validation threshold. Nothing here trains.
"""

from __future__ import annotations

from collections.abc import Iterator

from yolodiag.checks.engine import Facts
from yolodiag.findings import Problem, Severity, Stage, check
from yolodiag.shapes import plain_number

FALLS = 0.8  # a loss term falls when its last steps average at most 0.8 of its step-0 value
LAST_STEPS = 5
EVAL_BEHIND = 0.5  # eval-mode mAP below half the train-mode mAP: the two modes disagree
INIT_LOSS_FACTOR = 2.0  # step-0 loss more than 2x (or under 1/2x) the loss the priors imply

def _ended_without_passing(facts: Facts) -> bool:
    fit = facts.fit
    return fit.passed_at is None and fit.nonfinite_step is None


def _prior_text(prior) -> str:
    if prior.objectness is None:  # no objectness: the class score is the confidence
        return (f"stride {plain_number(prior.stride)}: class score "
                f"{prior.class_probability:.2g}")
    return (f"stride {plain_number(prior.stride)}: objectness {prior.objectness:.2g}, class "
            f"{prior.class_probability:.2g}, confidence {prior.confidence:.2g}")


def _falling(fit, term: str) -> tuple[float, float] | None:
    """(step-0 value, mean of the last steps) of a loss term, None when it cannot be judged."""
    if len(fit.steps) < 2 * LAST_STEPS:
        return None
    first = fit.steps[0].value(term)
    last = sum(s.value(term) for s in fit.steps[-LAST_STEPS:]) / LAST_STEPS
    return first, last


@check("YD701", "cannot-overfit", Severity.ERROR, Stage.FIT)
def cannot_overfit(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        The model does not memorise one batch: eval-mode mAP@0.5 on the very batch it trains
        on stays below the pass mark (0.5) for the whole step budget. The message says which
        way it failed: the loss did not fall (YD702: wiring, gradients, assignment), it fell
        but train-mode predictions stayed wrong (strides, anchors, decoding, labels; YD404
        when no anchor takes the targets), or train mode was right and eval mode was not
        (YD704). The run: a deep copy of the model (yours is never trained) on one fixed
        batch (synthetic by default, 1 or 2 objects per image and level, sized after the
        level's anchors: see YD707), SGD with Nesterov momentum 0.937, lr 0.01 constant,
        weight decay 5e-4 on convolution and linear weights only, gradient norm clipped at
        10 (YOLOv5 v7.0's train.py and hyp.scratch-low, without warm-up, schedule or
        augmentation), loss gains scaled by train.py's rules (class count, image size,
        levels). Every 10 steps the batch is evaluated in train mode and in eval mode with
        val.py's conf 0.001 and multi-label NMS at IoU 0.6; the run stops when eval-mode
        mAP@0.5 reaches 0.5, after 300 steps (`--steps`), or as soon as the verdict cannot
        change: a loss within 1% of its start for 50 steps, or, in the budget's second half
        with a loss that fell less than 10% over the last 50 steps, a best mAP@0.5 that the
        fastest rise measured between two evaluations cannot lift to 0.5 in the steps left.
        The message names what the run measured besides: train mode fitting while eval mode
        lags, one level carrying every positive, priors below val.py's conf.
    Why it zeroes P and R:
        A model that cannot fit one batch cannot fit a dataset: validation's precision and
        recall stay at zero however long it trains.
    Why it is an error:
        Measured: the model was trained on the very batch it is scored on and still did not
        reach the pass mark; a model that cannot memorise one batch does not learn a
        dataset.
    Example:
        anchors:
          - [1.25,1.625, 2,3.75, 4.125,2.875]  # grid units, not pixels
    Fix:
        Follow the finding the message points to (run `yolodiag check` for the structural
        ones); rerun `yolodiag overfit` until it passes before training on the dataset.
    """
    fit = facts.fit
    if not _ended_without_passing(facts):
        return
    best_eval, best_train = fit.best("eval"), fit.best("train")
    loss = _falling(fit, "loss")
    if fit.untrainable:
        why = "the loss depends on no trainable parameter (see YD702)"
    elif loss is not None and loss[1] > FALLS * loss[0]:
        why = "the loss did not fall (see YD702)"
    elif fit.unmatched:
        missed = ("match no anchor" if "anchors" in facts.dialect.capabilities
                  else "are assigned to no cell")
        why = (f"{fit.unmatched} of the batch's {fit.targets} objects {missed}, so "
               "they are learnt as background and recall cannot rise (see YD404)")
    elif best_train.map50 < facts.fit.settings.pass_mark:
        why = ("the loss fell but train-mode predictions stay wrong: look at strides, anchors "
               "and the head's `from` (yolodiag check), and at layers that do not learn "
               "(yolodiag gradflow)")
    else:
        why = "train mode fits the batch but eval mode does not (see YD704)"
    fell = f"; loss {loss[0]:.3g} -> {loss[1]:.3g}" if loss else ""
    if fit.stopped == "budget" and fit.evaluated("train")[-1].map50 >= best_train.map50 > 0:
        why += "; train-mode mAP was still rising at the end: more --steps may pass"
    why += "".join(f"; {cause}" for cause in measured_causes(facts))
    yield Problem(
        f"{_ended(fit)}eval-mode mAP@0.5 is at best {best_eval.map50:.3f} "
        f"(step {best_eval.step}), train-mode {best_train.map50:.3f} (step {best_train.step}), "
        f"below the pass mark {fit.settings.pass_mark}{fell}: {why}",
        "fix the finding named; `yolodiag check` for strides, anchors and wiring",
        facts.where(), {"best_eval_map50": best_eval.map50, "best_train_map50": best_train.map50,
                        "steps": len(fit.steps)})


def _ended(fit) -> str:
    """How the run ended, as the start of YD701's message."""
    ran = len(fit.steps)
    if fit.stopped == "out-of-reach":
        return (f"stopped after {ran} of {fit.settings.steps} steps (the loss had stopped "
                f"falling and at the fastest rise measured mAP@0.5 reaches at most "
                f"{fit.reach:.3f} by the last step): ")
    if fit.stopped == "flat":
        return (f"stopped after {ran} steps (the loss stayed within "
                f"{fit.settings.flat_band:.0%} of its start): ")
    return f"after {ran} steps "


def measured_causes(facts: Facts) -> list[str]:
    """What the run measured that explains a failure: eval mode lagging train mode, one level
    carrying every positive, levels whose priors start below val.py's conf."""
    fit, causes = facts.fit, []
    train = {e.step: e.map50 for e in fit.evaluated("train")}
    lagging = [e for e in fit.evaluated("eval") if train[e.step] >= fit.settings.pass_mark
               and e.map50 < fit.settings.pass_mark]
    if lagging:
        first = lagging[0]
        causes.append(f"measured: train mode fits (mAP@0.5 {train[first.step]:.3f} at step "
                      f"{first.step}) while eval mode lags ({first.map50:.3f}): BatchNorm's "
                      "running statistics trail the batch's")
    positives = fit.positives_per_level
    strides = [plain_number(p.stride) for p in fit.priors]
    if len(positives) > 1 and sum(1 for n in positives if n) == 1:
        level = next(i for i, n in enumerate(positives) if n)
        causes.append(f"measured: all {positives[level]} positives are on the stride-"
                      f"{strides[level]} level, so the other levels learn only background")
    low = [f"stride {s} {p.confidence:.2g}" for s, p in zip(strides, fit.priors)
           if p.confidence < fit.settings.conf]
    if low:
        left = (f"eval-mode mAP@0.5 left zero at step {fit.eval_left_zero}"
                if fit.eval_left_zero is not None else "eval-mode mAP@0.5 never left zero")
        causes.append(f"measured: priors start below val.py's conf {fit.settings.conf} "
                      f"({', '.join(low)}); {left}")
    return causes


@check("YD707", "level-without-positives", Severity.INFO, Stage.FIT)
def level_without_positives(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A level of the head that the one batch gave no positive under YOLOv5's assignment: the
        run says nothing about that level. This is a limit of the experiment, not a fault of
        the model. The synthetic batch sizes its objects after each level's anchors (1 or 2
        per image and level, an anchor times 1/2 to 2, inside anchor_t 4), so a level without
        positives there means its anchors fit no object of ordinary size in this image (1/40
        to 0.95 of its side; see YD404 and --img); a `--data` batch keeps its real labels.
    Why it zeroes P and R:
        It does not by itself: a level that sees no object in the batch is trained only as
        background, so the overfit verdict cannot show whether objects of that size would be
        found.
    Example:
        - [400,300, 500,400, 600,500]  # P4/16: larger than any 64x64 object by 4x
    Fix:
        Nothing in the model. For a verdict on every level give the run objects of that size:
        a larger --img, a larger --batch of --data images, or the synthetic batch.
    """
    fit = facts.fit
    empty = [i for i, n in enumerate(fit.positives_per_level) if n == 0]
    if not empty or len(empty) == len(fit.positives_per_level):
        return  # no positive at all is YD404's (no anchor takes the targets) and YD701's
    strides = ", ".join(str(plain_number(fit.priors[i].stride)) for i in empty)
    anchors = "anchors" in facts.dialect.capabilities
    source = ("its real labels" if facts.data is not None
              else "the synthetic objects, sized after its anchors," if anchors
              else "the synthetic objects, sized after each level's fresh boxes,")
    missed = "match no anchor there" if anchors else "are assigned to no cell there"
    yield Problem(
        f"the batch ({fit.targets} objects) gives the stride-{strides} level(s) no positive: "
        f"{source} {missed}, so this run tests the other levels only (a limit "
        "of the batch, not a fault of the model)",
        "for a verdict on that level: a larger --img or --batch" if facts.data is not None
        else "for a verdict on that level: a larger --img", facts.where(),
        {"levels": empty, "positives_per_level": list(fit.positives_per_level)})


@check("YD702", "loss-not-decreasing", Severity.ERROR, Stage.FIT)
def loss_not_decreasing(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        The loss, or a term that must fall (YOLOv5's box and class terms), does not fall while
        the model trains on one batch: the mean of its last 5 steps is above 0.8 of its step-0
        value, in a run that did not reach the pass mark; or the loss depends on no trainable
        parameter at all. A term that starts at exactly 0 (no positive anchor, or one class) is
        not judged, nor is YOLOv5's objectness term: its target is the IoU of the predicted
        box, so it rises while the boxes improve (measured: 2.5x its start after 60 healthy
        steps). A detach before the head does not stop the loss from falling on one batch
        (the layers after it still learn); `yolodiag gradflow` (YD601) finds those layers.
    Why it zeroes P and R:
        What the loss cannot lower, the model does not learn: a box term that stays up means
        boxes never fit, an objectness term that stays up means no cell learns "object here".
        The usual causes are a detached or frozen path (gradflow's YD601), a learning signal
        that never reaches the head's inputs, or targets assigned to the wrong cells.
    Why it is an error:
        Measured over the run: a loss term that does not fall is a term the model does not
        learn, and the run did not reach the pass mark.
    Example:
        [[7, 4], 1, DetachedDetect, [nc, anchors]],   # 8: Detect whose forward detaches its outputs
    Fix:
        Run `yolodiag gradflow` on the model: it names the layers without gradient and where
        the flow stops.
    """
    fit = facts.fit
    if not _ended_without_passing(facts):
        return
    if fit.untrainable:
        yield Problem(
            f"the loss ({fit.steps[0].loss:.3g}) depends on no trainable parameter: nothing "
            "between the weights and the head's output carries a gradient, so no step can "
            "lower it", "find the `.detach()` or `no_grad` around the head, or unfrozen weights",
            facts.where(), {"terms": ["loss"]})
        return
    stuck = []
    for term in ("loss", *facts.dialect.loss.MUST_FALL):
        values = _falling(fit, term)
        if values is not None and values[0] > 0 and values[1] > FALLS * values[0]:
            stuck.append((term, *values))
    if stuck:
        listed = ", ".join(f"{term} {first:.3g} -> {last:.3g}" for term, first, last in stuck)
        yield Problem(
            f"over {len(fit.steps)} steps on one batch these loss terms did not fall below "
            f"{FALLS:g} of their start: {listed}",
            "run `yolodiag gradflow` to find the layers that get no gradient",
            facts.where(), {"terms": [term for term, _, _ in stuck]})


@check("YD703", "nonfinite-loss", Severity.ERROR, Stage.FIT)
def nonfinite_loss(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        The loss (or the gradient norm) turned NaN or Inf during the one-batch run; the step
        is named. Under `--amp` with float16 (CUDA) the usual cause is an overflow: float16
        ends at 65504, and a feature map or a logit beyond it becomes Inf.
    Why it zeroes P and R:
        The optimizer writes NaN into the weights; every later prediction is NaN, NMS keeps
        nothing, and precision, recall and mAP are zero while the log shows `nan`.
    Why it is an error:
        Measured: the loss or the gradient norm turned NaN or Inf; the optimiser then writes
        NaN into the weights and every later prediction is NaN.
    Example:
        [-1, 1, Overflowing, [32]],   # 2: multiplies its output by 1e5, fine in float32
    Fix:
        Without --amp: find the layer with `yolodiag gradflow` (YD602). With --amp only: keep
        activations in range (a BatchNorm after the layer, no large constant factors) or
        train in float32.
    """
    fit = facts.fit
    if fit.nonfinite_step is None:
        return
    amp = (f" under --amp ({fit.amp}): an overflow of {fit.amp}'s range is the likely cause"
           if fit.amp else "")
    yield Problem(
        f"the {fit.nonfinite_what} became NaN or Inf at step {fit.nonfinite_step}{amp}",
        ("train without --amp to confirm; keep activations within float16's 65504"
         if fit.amp else "run `yolodiag gradflow` to find the first layer with NaN (YD602)"),
        facts.where(), {"step": fit.nonfinite_step, "what": fit.nonfinite_what,
                        "amp": fit.amp})


@check("YD704", "train-eval-mismatch", Severity.ERROR, Stage.FIT)
def train_eval_mismatch(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        At the end of a run that did not pass, train-mode predictions fit the batch
        (mAP@0.5 at or above the pass mark) while eval-mode ones reach less than half of
        that: the two modes of the same weights disagree. Eval mode uses BatchNorm's running
        statistics; they follow the batch's with YOLOv5's momentum 0.03, so early in a run
        eval mode lags (stock yolov5n: about 200 steps) and only a lag that outlasts the
        budget counts. Other causes: BatchNorm momentum 0 or layers frozen in eval mode,
        fused or half-precision paths that differ from training. For a family that fuses
        convolution and BatchNorm before its final validation (Ultralytics), also: the fused
        model reaches less than half the unfused eval-mode mAP@0.5 (a user's subclass of the
        family's convolution layer whose forward does more than convolution, norm and
        activation loses the rest when fused).
    Why it zeroes P and R:
        val.py and detect.py run eval mode. A model whose eval mode predicts garbage shows
        zero precision and recall in every validation, however well its loss falls.
    Why it is an error:
        Measured: train mode fits the batch while eval mode, which val.py runs, reaches less
        than half of it; validation scores the eval-mode predictions.
    Example:
        [-1, 1, FrozenStatsConv, [32, 3, 1]],   # 2: BatchNorm with momentum 0
    Fix:
        Leave BatchNorm's momentum at YOLOv5's 0.03 and its layers in train mode while
        training; check fused or half-precision code paths against the float32 ones.
    """
    fit = facts.fit
    fused, unfused = fit.evaluated("fused"), fit.evaluated("eval")
    if fused and unfused and fused[-1].map50 < EVAL_BEHIND * unfused[-1].map50:
        yield Problem(
            f"at step {fused[-1].step} the fused model (BatchNorm folded into the convolutions, "
            f"as the final validation runs it) reaches mAP@0.5 {fused[-1].map50:.3f} where the "
            f"unfused one "
            f"reaches {unfused[-1].map50:.3f}: fusing replaces a forward the model needs",
            "a block that subclasses the family's convolution layer but does more in its "
            "forward loses that when fused: give it its own class", facts.where(),
            {"fused_map50": fused[-1].map50, "eval_map50": unfused[-1].map50})
    if not _ended_without_passing(facts):
        return
    train, evaluated = fit.evaluated("train")[-1], fit.evaluated("eval")[-1]
    if train.map50 >= fit.settings.pass_mark and evaluated.map50 < EVAL_BEHIND * train.map50:
        yield Problem(
            f"at step {train.step} train-mode mAP@0.5 is {train.map50:.3f} but eval-mode "
            f"{evaluated.map50:.3f} ({evaluated.above_conf} predictions above conf "
            f"{fit.settings.conf}): BatchNorm's running statistics do not describe the batch",
            "check BatchNorm momentum and that no layer is kept in eval mode while training",
            facts.where(), {"train_map50": train.map50, "eval_map50": evaluated.map50})


@check("YD705", "below-conf-threshold", Severity.WARNING, Stage.FIT)
def below_conf_threshold(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        At step 0 (the freshly built model) no eval-mode prediction reaches val.py's
        confidence threshold 0.001, so validation sees no box at all. The priors are stated
        per level: YOLOv5 initialises objectness to about 8 objects per 640x640 image per
        level, sigmoid(b) = 8 / (640 / stride)^2, and class probability to 0.6 / (nc - 1);
        confidence is their product. At stride 4 the objectness prior is 3.1e-4, below 0.001
        by itself; with 80 classes every stock model starts below it too (class prior
        0.6 / 79). The step at which eval-mode mAP left zero is named when the run got there,
        and when the run passes the finding is an info, not a warning.
    Why it zeroes P and R:
        Until training lifts the scores past the threshold, every validation reports P = R =
        mAP = 0 exactly: not proof of a bug, but the first epochs of such a model look dead.
    Example:
        [[-1, 1, Conv, [16, 3, 1]],    # 0: stride 1
    Fix:
        Usually nothing: it resolves as the model trains (see the step named). If levels of
        stride 4 or less were not intended, restore the stem's downsampling (YD301).
    """
    fit = facts.fit
    first = next((e for e in fit.evaluated("eval") if e.step == 0), None)
    if first is None or first.above_conf:
        return
    priors = "; ".join(_prior_text(p) for p in fit.priors)
    later = (f"; eval-mode mAP@0.5 left zero at step {fit.eval_left_zero}"
             if fit.eval_left_zero is not None else "")
    yield Problem(
        f"at step 0 no eval-mode prediction reaches conf {fit.settings.conf} (the priors per "
        f"level: {priors}){later}",
        "expect zero P/R in the first validations; stride-4 levels start below the threshold",
        facts.where(), {"priors": [p.confidence for p in fit.priors],
                        "eval_left_zero": fit.eval_left_zero},
        # a run that passed shows the zeros were only the start: a fact, not a warning
        Severity.INFO if fit.passed_at is not None else None)


@check("YD706", "init-loss-off", Severity.WARNING, Stage.FIT)
def init_loss_off(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        The loss at step 0 is more than twice (or less than half) the loss YOLOv5's Detect
        bias priors imply for the same batch (the loss of raw maps holding only the priors).
        A freshly built model sits close to it (its random weights add some spread); far
        from it, the priors are missing or were overwritten, e.g. biases zeroed or loaded
        from a checkpoint of another class count.
    Why it zeroes P and R:
        Without the priors every cell starts at objectness 0.5: the objectness loss is huge,
        its gradient drowns the box and class terms for many steps, and early validations
        are flooded with low-quality boxes or, after the collapse, empty.
    Example:
        [[7, 4], 1, NoPriorDetect, [nc, anchors]],   # 8: Detect whose biases start at 0
    Fix:
        Build the head through YOLOv5's Detect (which calls initialize_biases) or call it
        after replacing the head's convolutions.
    """
    fit = facts.fit
    if not fit.steps or not fit.prior_loss:
        return
    start = fit.steps[0].loss
    ratio = start / fit.prior_loss
    if ratio > INIT_LOSS_FACTOR or ratio < 1 / INIT_LOSS_FACTOR:
        yield Problem(
            f"step-0 loss {start:.3g} is {ratio:.2g}x the {fit.prior_loss:.3g} that "
            f"{facts.possessive} bias priors imply for this batch",
            f"check that the {facts.head_module} biases were initialised (initialize_biases) and "
            "not overwritten", facts.where(), {"loss": start, "prior_loss": fit.prior_loss})
