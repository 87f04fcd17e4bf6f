"""Overfit's results and settings as plain values: the settings of a run (FitSettings), each
evaluation of the batch (Evaluation), each training step (StepRecord), the head's priors (Prior)
and the whole run (OverfitHistory), each with what the report needs. Nothing here trains or
touches torch; overfit.py runs the loop, checks/fit.py judges these values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class FitSettings:
    """The schedule and the SGD settings of YOLOv5's train.py (hyp.scratch-low). The optimiser
    itself is the family's (`dialect.loss.optimizer`): YOLOv5 and YOLOv7 build SGD from lr,
    momentum and weight_decay here; a family whose trainer picks its own for a short run
    (Ultralytics' optimizer=auto) builds that, and the report states what was built."""

    steps: int = 300  # optimiser steps at most; the run stops at the pass mark
    eval_every: int = 10
    lr: float = 0.01  # lr0, constant: one batch needs no schedule
    momentum: float = 0.937  # SGD with Nesterov momentum, as train.py's default optimiser
    weight_decay: float = 5e-4  # on convolution and linear weights only, as YOLOv5
    max_grad_norm: float = 10.0  # train.py v7.0 clips the gradient norm at 10
    pass_mark: float = 0.5  # eval-mode mAP@0.5 on the training batch
    # Validation's confidence and NMS IoU thresholds; None: those of the family's training-time
    # validation (`dialect.evaluation.CONF`, `IOU`), filled in when the run starts.
    conf: float | None = None
    iou: float | None = None
    amp: bool = False  # autocast: float16 and a GradScaler on CUDA, bfloat16 on the CPU
    # Early stops. Flat: every step's loss within flat_band of step 0's for flat_steps steps.
    flat_steps: int = 50
    flat_band: float = 0.01
    # Out of reach: from reach_from of the budget on, while the loss's mean over the last
    # plateau_steps is above `plateau` of its mean over the plateau_steps before (it has
    # stopped falling), the best mAP@0.5 plus the fastest rise between two evaluations, for
    # every evaluation left, stays below the pass mark.
    reach_from: float = 0.5
    plateau_steps: int = 50
    plateau: float = 0.9

    def for_family(self, evaluation: Any) -> FitSettings:
        """These settings with the family's validation thresholds wherever none was given."""
        return replace(self, conf=evaluation.CONF if self.conf is None else self.conf,
                       iou=evaluation.IOU if self.iou is None else self.iou)


STOP_REASONS = ("passed", "budget", "nonfinite", "untrainable", "flat", "out-of-reach")


@dataclass(frozen=True)
class Evaluation:
    """The training batch predicted in one mode at one step, scored as the family's validation
    scores it."""

    step: int
    # "train" (batch statistics), "eval" (running statistics), "ema": the family's EMA of the
    # weights in eval mode, what its validation scores during training, or "fused": the last
    # model with Conv and BatchNorm fused, as the family validates its final weights
    mode: str
    precision: float
    recall: float
    map50: float
    map: float
    above_conf: int  # predictions whose objectness and confidence pass `conf`, before NMS
    detections: int  # after NMS


@dataclass(frozen=True)
class StepRecord:
    step: int
    loss: float  # the sum of the terms times the batch, what the family's trainer backpropagates
    terms: dict[str, float]  # each loss term as the family logs it (`dialect.loss.TERMS`)
    grad_norm: float  # before clipping
    seconds: float = 0.0  # wall time of this step (forward, loss, backward, optimiser)

    def value(self, name: str) -> float:
        """"loss" or one of the terms."""
        return self.loss if name == "loss" else self.terms[name]

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "loss": self.loss, **self.terms,
                "grad_norm": self.grad_norm, "seconds": self.seconds}


@dataclass(frozen=True)
class Prior:
    """What the head's bias initialisation predicts at one level before any training."""

    stride: float
    objectness: float | None  # None: the family's head has no objectness (anchor-free)
    class_probability: float

    @property
    def confidence(self) -> float:
        """The score validation compares with its conf: objectness times class probability,
        or the class probability alone."""
        if self.objectness is None:
            return self.class_probability
        return self.objectness * self.class_probability


@dataclass
class OverfitHistory:
    img: tuple[int, int]
    batch: int
    targets: int
    device: str
    amp: str | None  # the autocast dtype, or None
    settings: FitSettings
    terms: tuple[str, ...]  # the family's loss terms, in its order
    optimizer: str  # what the family's trainer would use for a short run, as built
    positives_per_level: tuple[int, ...]  # YOLOv5's assignment of the batch's targets
    unmatched: int  # targets no anchor takes
    priors: tuple[Prior, ...]
    prior_loss: float  # the loss the bias priors imply (YD706's reference)
    steps: list[StepRecord] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    passed_at: int | None = None
    nonfinite_step: int | None = None
    nonfinite_what: str | None = None  # "loss" or "gradient"
    untrainable: bool = False  # the loss depends on no trainable parameter: nothing can learn
    stopped: str = "budget"  # one of STOP_REASONS
    reach: float | None = None  # out-of-reach: the best mAP@0.5 the fastest rise could give
    ema_updates: int | None = None  # the EMA's update count at its last evaluation (None: no EMA)
    seconds: float = 0.0  # the whole run, evaluations included
    train_seconds: float = 0.0  # the training steps alone

    def evaluated(self, mode: str) -> list[Evaluation]:
        return [e for e in self.evaluations if e.mode == mode]

    def best(self, mode: str) -> Evaluation | None:
        runs = self.evaluated(mode)
        return max(runs, key=lambda e: e.map50) if runs else None

    @property
    def eval_left_zero(self) -> int | None:
        """The first step whose eval-mode mAP@0.5 was above zero."""
        return next((e.step for e in self.evaluated("eval") if e.map50 > 0), None)

    @property
    def seconds_per_step(self) -> float | None:
        """Wall time of one training step (forward, loss, backward, optimiser), evaluations
        left out."""
        return self.train_seconds / len(self.steps) if self.steps else None

    def as_dict(self) -> dict[str, Any]:
        return {"img": list(self.img), "batch": self.batch, "targets": self.targets,
                "device": self.device, "amp": self.amp, "settings": asdict(self.settings),
                "terms": list(self.terms), "optimizer": self.optimizer,
                "positives_per_level": list(self.positives_per_level),
                "unmatched": self.unmatched,
                "priors": [{**asdict(p), "confidence": p.confidence} for p in self.priors],
                "prior_loss": self.prior_loss, "passed_at": self.passed_at,
                "eval_left_zero": self.eval_left_zero, "nonfinite_step": self.nonfinite_step,
                "nonfinite_what": self.nonfinite_what, "untrainable": self.untrainable,
                "stopped": self.stopped, "reach": self.reach, "ema_updates": self.ema_updates,
                "seconds": self.seconds, "train_seconds": self.train_seconds,
                "seconds_per_step": self.seconds_per_step,
                "steps": [s.as_dict() for s in self.steps],
                "evaluations": [asdict(e) for e in self.evaluations]}


Progress = Callable[[OverfitHistory], None]
