"""Overfit one batch: the decisive experiment for "precision and recall stay at zero".

A sound model memorises one fixed batch within a few hundred steps. `overfit` trains a copy of a
built model on one batch with its family's loss and optimiser, and every few steps
evaluates the same batch twice as the family's per-epoch validation would (its thresholds, NMS,
matching and AP: `dialect.evaluation`; conf 0.001, IoU 0.6 for YOLOv5's val.py and YOLOv7's
test.py alike): in train mode (BatchNorm on the batch's statistics, as the loss sees it) and in
eval mode (BatchNorm on its running statistics, as validation sees it). The history it returns
separates the ways a model fails: the loss does not fall, it falls but train-mode predictions
stay wrong, train mode is right but eval mode is not, or values turn non-finite. The loop reads
top to bottom; it never touches the caller's model (it trains a deep copy) and never prints:
`progress` is called after each step and after each evaluation.

The run stops as soon as its verdict cannot change: the pass mark reached, a non-finite value, a
loss that no parameter can move, a flat loss, or predictions that cannot reach the pass mark in
the steps left at the fastest rise measured (judged in the budget's second half only, and only
while the loss has stopped falling). `stopped` says which.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from yolodiag.build.builder import BuiltModel
from yolodiag.metrics import xywh2xyxy
from yolodiag.overfit_values import (  # noqa: F401  (the names callers import from here)
    STOP_REASONS,
    Evaluation,
    FitSettings,
    OverfitHistory,
    Prior,
    Progress,
    StepRecord,
)
from yolodiag.probes import preserved


def overfit(built: BuiltModel, images: Tensor, targets: Tensor,
            settings: FitSettings = FitSettings(), progress: Progress | None = None,
            windows: Tensor | None = None) -> OverfitHistory:
    """Train a copy of `built.model` on (images, targets) until eval-mode mAP@0.5 reaches the
    pass mark or the step budget is spent. Everything runs on the images' device. `windows`
    (b, 4) x1, y1, x2, y2: where each image lies in its letterbox (default: the whole image);
    predictions are clipped to it before scoring, as val.py clips them to the original image."""
    device = images.device
    batch, img = images.shape[0], (images.shape[2], images.shape[3])
    model = copy.deepcopy(built.model).to(device)  # the caller's model is never trained
    head = model.head
    nl = len(built.stride)
    objective = built.dialect.loss  # the family's loss, target assignment and hyp
    evaluation = built.dialect.evaluation  # how the family's validation scores predictions
    settings = settings.for_family(evaluation)
    # train.py scales the loss gains to the class count, image size and number of levels.
    hyp = objective.train_hyp(objective.HYP, head.nc, max(img), nl)
    amp_dtype = autocast_dtype(device) if settings.amp else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    optimizer, optimizer_text = objective.optimizer(model, settings, head.nc, batch)
    with torch.no_grad(), preserved(model):  # the fresh model's grids (and predictions)
        model.train()
        fresh = _as_float(model(images))
    grids = [tuple(r.shape[2:4]) for r in head.raw_maps(fresh)]
    positives, unmatched = objective.batch_positives(_with_model(built, model), fresh,
                                                     targets, hyp)
    del fresh
    # A family whose validation scores an EMA of the weights (Ultralytics) has it scored too.
    ema = (_WeightAverage(model, objective.ema_decay) if hasattr(objective, "ema_decay")
           else None)
    history = OverfitHistory(
        img, batch, int(targets.shape[0]), str(device),
        None if amp_dtype is None else str(amp_dtype).removeprefix("torch."), settings,
        tuple(objective.TERMS), optimizer_text, positives, unmatched,
        tuple(Prior(*p) for p in built.dialect.model.priors(head)),
        float(objective.prior_loss(built, grids, targets.cpu(), batch, hyp)[0]))
    if windows is None:
        windows = torch.tensor([[0.0, 0.0, img[1], img[0]]]).expand(batch, 4)
    windows = windows.to(device)
    start = time.perf_counter()
    for step in range(settings.steps + 1):
        # Evaluate before the step: step 0 is the freshly built model.
        if step % settings.eval_every == 0 or step == settings.steps:
            if ema is not None:  # first: the verdicts read the eval-mode evaluation last
                history.evaluations.append(_evaluate(ema.model, images, targets, windows, step,
                                                     "ema", settings, amp_dtype, evaluation))
                history.ema_updates = ema.updates
            for mode in ("train", "eval"):
                history.evaluations.append(_evaluate(model, images, targets, windows, step,
                                                     mode, settings, amp_dtype, evaluation))
            history.seconds = time.perf_counter() - start
            if progress is not None:
                progress(history)
            if history.evaluations[-1].map50 >= settings.pass_mark:
                history.passed_at, history.stopped = step, "passed"
                break
            history.reach = _out_of_reach(history, step)
            if history.reach is not None:
                history.stopped = "out-of-reach"
                break
        if step == settings.steps:
            break
        tick = time.perf_counter()
        model.train()
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            raw = model(images)
        # The loss in float32: under autocast YOLOv5's loss ops (BCE with logits, sums) run in
        # float32 as well.
        # `built`, not only its anchors: a family's loss may need the strides (YOLOv7's OTA).
        loss, items = objective.compute_loss(built, _as_float(raw), targets, hyp)
        if not torch.isfinite(loss).all():
            history.nonfinite_step, history.nonfinite_what = step, "loss"
            history.stopped = "nonfinite"
            break
        terms = dict(zip(objective.TERMS, (float(v) for v in items)))
        if not loss.requires_grad:  # detached or frozen all the way: no step can change it
            history.steps.append(StepRecord(step, float(loss), terms, 0.0))
            history.untrainable, history.stopped = True, "untrainable"
            break
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm))
        if not math.isfinite(grad_norm) and amp_dtype is not torch.float16:
            # (under float16 the scaler skips such a step and lowers its scale, as in YOLOv5)
            history.nonfinite_step, history.nonfinite_what = step, "gradient"
            history.stopped = "nonfinite"
            break
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update(model)
        now = time.perf_counter()
        history.steps.append(StepRecord(step, float(loss.detach()), terms, grad_norm,
                                        now - tick))
        history.train_seconds += now - tick
        history.seconds = now - start
        if progress is not None:
            progress(history)
        if _flat(history.steps, settings):
            history.stopped = "flat"
            break
    fuse = getattr(built.dialect.model, "fuse", None)  # a family that fuses before validating
    if fuse is not None and history.evaluations and history.stopped != "nonfinite":
        history.evaluations.append(_evaluate(fuse(model), images, targets, windows,
                                             history.evaluations[-1].step, "fused", settings,
                                             amp_dtype, evaluation))
    history.seconds = time.perf_counter() - start
    return history


def _flat(steps: list[StepRecord], settings: FitSettings) -> bool:
    """Every loss so far within flat_band of the first, for flat_steps steps: nothing learns."""
    if len(steps) < settings.flat_steps:
        return False
    first = steps[0].loss
    return all(abs(s.loss - first) <= settings.flat_band * abs(first) for s in steps)


def _out_of_reach(history: OverfitHistory, step: int) -> float | None:
    """The best mAP@0.5 the rest of the budget could bring at the fastest rise measured, when
    it stays below the pass mark and the loss has stopped falling; None otherwise."""
    settings = history.settings
    window = settings.plateau_steps
    if (not settings.reach_from * settings.steps <= step < settings.steps  # the end: budget
            or len(history.steps) < 2 * window):
        return None
    losses = [s.loss for s in history.steps]
    recent = sum(losses[-window:]) / window
    earlier = sum(losses[-2 * window:-window]) / window
    if recent < settings.plateau * earlier:
        return None
    judged = [e for e in history.evaluations if e.mode in ("train", "eval")]
    steps = sorted({e.step for e in judged})
    best = [max(e.map50 for e in judged if e.step == s) for s in steps]
    fastest = max([b - a for a, b in zip(best, best[1:])] + [0.0])
    left = math.ceil((settings.steps - step) / settings.eval_every)
    reach = max(best) + fastest * left
    return reach if reach < settings.pass_mark else None


def autocast_dtype(device: torch.device) -> torch.dtype:
    """--amp: float16 on CUDA (with a GradScaler, as train.py), bfloat16 on the CPU."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


class _WeightAverage:
    """The exponential moving average of the weights a family's trainer validates: a copy of
    the fresh model whose floating-point state follows every optimiser step,
    v = d v + (1 - d) w, with the family's decay d at that update count."""

    def __init__(self, model: nn.Module, decay: Callable[[int], float]):
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay(self.updates)
        current = model.state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(current[name].detach(), alpha=1 - d)


def _as_float(out: Any) -> Any:
    """A model's output with every floating tensor in float32 (the loss runs in float32: under
    autocast the families' loss ops do as well)."""
    if isinstance(out, Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, dict):
        return {k: _as_float(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return type(out)(_as_float(v) for v in out)
    return out


def _with_model(built: BuiltModel, model: nn.Module) -> BuiltModel:
    """`built` around the copy being trained (an assigner that reads its predictions)."""
    return replace(built, model=model)


def _evaluate(model: nn.Module, images: Tensor, targets: Tensor, windows: Tensor, step: int,
              mode: str, settings: FitSettings, amp_dtype: torch.dtype | None,
              evaluation: Any) -> Evaluation:
    """Predict the batch in `mode` (restoring the BatchNorm statistics a train-mode forward
    would move) and score it with the family's validation: NMS, clipping, matching and AP."""
    head = model.head
    with torch.no_grad(), preserved(model), torch.autocast(
            images.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        model.train(mode == "train")
        out = model(images)
        decoded = (head.decode(out) if mode == "train" else out[0]).float()
    above = evaluation.candidates(decoded, settings.conf)
    metrics, detections = score(decoded, targets, windows, images.shape[-2:], settings,
                                evaluation)
    return Evaluation(step, mode, metrics["mp"], metrics["mr"], metrics["map50"], metrics["map"],
                      above, detections)


def score(decoded: Tensor, targets: Tensor, windows: Tensor, img: tuple[int, int],
          settings: FitSettings, evaluation: Any = None) -> tuple[dict[str, float], int]:
    """The family's validation on decoded predictions (b, n, 5 + nc) of images `img` (h, w): its
    NMS, each image's detections clipped to its window and matched to the targets, its AP.
    `evaluation` is the family's `dialect.evaluation` (default: the default dialect's).
    Returns the metrics and the number of detections."""
    if evaluation is None:
        from yolodiag.dialects import DEFAULT, DIALECTS

        evaluation = DIALECTS[DEFAULT].evaluation
    settings = settings.for_family(evaluation)
    detections = evaluation.non_max_suppression(decoded, settings.conf, settings.iou)
    h, w = img
    scale = torch.tensor([w, h, w, h], device=decoded.device)
    stats = []
    for i, found in enumerate(detections):
        truth = targets[targets[:, 0] == i]
        labels = torch.cat((truth[:, 1:2], xywh2xyxy(truth[:, 2:6]) * scale), 1)
        correct = evaluation.correct(found, labels, windows[i].tolist())
        stats.append((correct, found[:, 4], found[:, 5], truth[:, 1]))
    metrics = evaluation.detection_metrics([torch.cat(column, 0) for column in zip(*stats)])
    return metrics, sum(len(d) for d in detections)
