"""train.py v7.0's iteration plan for a run: batches per epoch, the warm-up's length, and how
many iterations and optimiser steps a number of finished epochs amounts to. Facts about its
loop (recorded from YOLOv5 v7.0's train.py), computed from the run's options; nothing runs.

- The train loader yields ceil(images / batch) batches per epoch, the batch being
  min(--batch-size, images); it does not drop the last partial batch.
- Warm-up lasts max(round(warmup_epochs x batches per epoch), 100) iterations; during it the
  weights' learning rate rises linearly from 0 to lr0 (the biases' falls from
  warmup_bias_lr), and gradients accumulate over a number of batches that rises linearly from
  1 to round(64 / batch) (64 being its nominal batch size).
- An optimiser step is taken when at least that many batches have passed since the last one.

Another family's loop differs in two numbers, which its run reader passes: the warm-up's floor
(`min_warmup`: YOLOv7's train.py waits 1000 iterations) and the step rule (`steps_on_multiples`:
YOLOv7 steps at every iteration that is a multiple of the accumulation, counted from 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

NOMINAL_BATCH = 64  # train.py's nbs: an optimiser step accumulates up to this many images
MIN_WARMUP_ITERATIONS = 100  # warm-up lasts at least this many iterations, however short an epoch


@dataclass(frozen=True)
class Schedule:
    """The iterations of one run: `epochs_done` finished epochs of `batches_per_epoch`."""

    train_images: int
    requested_batch: int  # --batch-size
    warmup_epochs: float  # hyp warmup_epochs
    epochs_done: int
    min_warmup: int = MIN_WARMUP_ITERATIONS
    steps_on_multiples: bool = False  # step when ni % accumulate == 0, not ni - last >= it
    # The accumulation the warm-up ramps to, where the family rounds and caps it first
    # (Ultralytics: max(round(64 / batch), 1), at most the run's iterations); None: 64 / batch.
    accumulate_to: int | None = None

    @property
    def batch_size(self) -> int:
        """Images per batch, as the loader gives them: never more than the images."""
        return min(self.requested_batch, self.train_images)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.train_images / self.batch_size)

    @property
    def warmup_iterations(self) -> int:
        return max(round(self.warmup_epochs * self.batches_per_epoch), self.min_warmup)

    @property
    def iterations(self) -> int:
        """Batches trained on (train.py's `ni` counts them from 0 across epochs)."""
        return self.epochs_done * self.batches_per_epoch

    @property
    def ended_in_warmup(self) -> bool:
        """The last iteration came before the warm-up reached lr0."""
        return self.iterations < self.warmup_iterations

    @property
    def optimizer_steps(self) -> int:
        """Optimiser steps taken in `iterations` batches, with the warm-up's rising
        accumulation (after it the accumulation stays at its final value)."""
        warmup, full = self.warmup_iterations, self.nominal_accumulation
        if self.steps_on_multiples:
            return self._steps_on_multiples(warmup, full)
        accumulate, last, steps = max(round(full), 1), -1, 0
        for ni in range(min(self.iterations, warmup + 1)):
            accumulate = max(1, round(float(np.interp(ni, [0, warmup], [1, full]))))
            if ni - last >= accumulate:
                steps, last = steps + 1, ni
        first = max(warmup + 1, last + accumulate)  # the next step after the warm-up
        if self.iterations > first:
            steps += (self.iterations - 1 - first) // accumulate + 1
        return steps

    @property
    def nominal_accumulation(self) -> float:
        return self.accumulate_to or NOMINAL_BATCH / self.batch_size

    def step_iterations(self) -> list[int]:
        """The iterations (train.py's `ni`) an optimiser step falls on, one by one (the
        default step rule: at least `accumulate` batches since the last step)."""
        warmup, full = self.warmup_iterations, self.nominal_accumulation
        accumulate, last, steps = max(round(full), 1), -1, []
        for ni in range(self.iterations):
            if ni <= warmup:
                accumulate = max(1, round(float(np.interp(ni, [0, warmup], [1, full]))))
            if ni - last >= accumulate:
                steps.append(ni)
                last = ni
        return steps

    def _steps_on_multiples(self, warmup: int, full: float) -> int:
        """The same count where a step falls on every iteration divisible by the accumulation
        of that moment (after the warm-up: its last value)."""
        accumulate, steps = 1, 0
        for ni in range(min(self.iterations, warmup + 1)):
            accumulate = max(1, round(float(np.interp(ni, [0, warmup], [1, full]))))
            steps += ni % accumulate == 0
        if self.iterations > warmup + 1:
            steps += (self.iterations - 1) // accumulate - warmup // accumulate
        return steps

    def as_dict(self) -> dict[str, Any]:
        return {"train_images": self.train_images, "batch_size": self.batch_size,
                "batches_per_epoch": self.batches_per_epoch,
                "warmup_epochs": self.warmup_epochs,
                "warmup_iterations": self.warmup_iterations, "epochs_done": self.epochs_done,
                "iterations": self.iterations, "optimizer_steps": self.optimizer_steps,
                "ended_in_warmup": self.ended_in_warmup}


def schedule(train_images: int | None, batch_size: Any, warmup_epochs: Any,
             epochs_done: int, *, min_warmup: int = MIN_WARMUP_ITERATIONS,
             steps_on_multiples: bool = False,
             accumulate_to: int | None = None) -> Schedule | None:
    """The schedule, or None where a number it needs is unknown (no train images counted,
    --batch-size -1 for AutoBatch). `min_warmup`, `steps_on_multiples`: the family's loop."""
    if not train_images or not isinstance(batch_size, int) or batch_size < 1:
        return None
    warmup = warmup_epochs if isinstance(warmup_epochs, (int, float)) else 3.0
    return Schedule(train_images, batch_size, float(warmup), epochs_done, min_warmup,
                    steps_on_multiples, accumulate_to)
