"""TensorBoard event files of an overfit run (tensorboard is an optional extra).

Scalars per step: the loss and its terms and the gradient norm; per evaluation: P, R,
mAP@0.5 and mAP@0.5:0.95 in train and eval mode. Written as the run goes, from the history
the report is made of, and flushed at every update: a run killed halfway keeps its curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class OverfitEvents:
    """Called with the growing history; writes what it has not written yet."""

    def __init__(self, folder: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))
        self.steps = self.evaluations = 0

    def __call__(self, history: Any) -> None:
        for step in history.steps[self.steps:]:
            for key in ("loss", *step.terms):
                self.writer.add_scalar(f"train/{key}", step.value(key), step.step)
            self.writer.add_scalar("train/grad_norm", step.grad_norm, step.step)
        for evaluation in history.evaluations[self.evaluations:]:
            for key in ("precision", "recall", "map50", "map"):
                self.writer.add_scalar(f"{evaluation.mode}_mode/{key}",
                                       getattr(evaluation, key), evaluation.step)
        self.steps, self.evaluations = len(history.steps), len(history.evaluations)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
