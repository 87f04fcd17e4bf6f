"""What a training run shows while it runs: on a terminal a progress bar with the live loss and
both modes' mAP@0.5, elsewhere (CI logs, pipes) one plain line per evaluation; both open with
an estimate of the time the step budget takes, measured on the first steps. Fed by overfit's
progress callback; it only prints and forwards the history to the event stream, if any.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console

ESTIMATE_AFTER = 3  # training steps timed before the estimate: the first is the slowest


def estimate(history: Any) -> str:
    """The budget in seconds from the steps and evaluations measured so far."""
    settings = history.settings
    per_step = history.train_seconds / len(history.steps)
    evaluated = len({e.step for e in history.evaluations})
    per_evaluation = (history.seconds - history.train_seconds) / max(evaluated, 1)
    evaluations = math.ceil(settings.steps / settings.eval_every) + 1
    total = settings.steps * per_step + evaluations * per_evaluation
    return (f"overfit: up to {settings.steps} steps x {per_step:.3f} s/step measured + "
            f"{evaluations} evaluations x {per_evaluation:.2f} s = at most about "
            f"{total:.0f} s; it stops as soon as the verdict is known")


def status(history: Any) -> str:
    """The live figures: last loss, then train and eval mode's last mAP@0.5."""
    parts = [f"loss {history.steps[-1].loss:.4g}"] if history.steps else []
    last = {e.mode: e.map50 for e in history.evaluations[-2:]}
    if last:
        parts.append(f"mAP@0.5 train {last.get('train', 0):.3f} eval {last.get('eval', 0):.3f}")
    return ", ".join(parts)


@contextlib.contextmanager
def fit_progress(console: Console, steps: int, events: Callable[[Any], None] | None = None
                 ) -> Iterator[Callable[[Any], None]]:
    """The callback for overfit: a bar on a terminal, plain lines elsewhere; `events` (the
    TensorBoard stream) gets every history too."""
    estimated = False

    def announce(history: Any, say: Callable[[str], None]) -> None:
        nonlocal estimated
        if events is not None:
            events(history)
        if not estimated and len(history.steps) >= ESTIMATE_AFTER:
            estimated = True
            say(estimate(history))

    if not console.is_terminal:
        shown = 0  # evaluations already printed

        def plain(history: Any) -> None:
            nonlocal shown
            announce(history, lambda text: console.print(text, markup=False, highlight=False))
            if len(history.evaluations) > shown:
                shown = len(history.evaluations)
                console.print(f"overfit: step {history.evaluations[-1].step}/{steps}: "
                              f"{status(history)}, {history.seconds:.0f} s", markup=False,
                              highlight=False)

        yield plain
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("overfit"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("overfit", total=steps, status="")

        def update(history: Any) -> None:
            announce(history, lambda text: bar.console.print(text, markup=False,
                                                              highlight=False))
            bar.update(task, completed=len(history.steps), status=status(history))

        yield update
