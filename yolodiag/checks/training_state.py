"""The training state train.py loads after the weights (YD511): a family whose train.py loads a
checkpoint's optimizer state and EMA whenever they are there stops on a per-epoch checkpoint
of another architecture. Reads Transfer.state_loads, which the dialect's transfer fills (None
where its train.py loads no training state when fine-tuning).
"""

from __future__ import annotations

from collections.abc import Iterator

from yolodiag.checks.engine import Facts
from yolodiag.findings import Problem, Severity, Stage, check


@check("YD511", "training-state-mismatch", Severity.ERROR, Stage.CKPT)
def training_state_mismatch(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A checkpoint that still carries its optimizer state (a per-epoch `epoch_NNN.pt`, or a
        last.pt of a run that never finished, which train.py strips only at the end) given
        to a model of another architecture. YOLOv7's train.py loads `ckpt['optimizer']`
        whenever it is not None, after the weights, and torch compares the tensors per
        parameter group (no-decay, weights, biases) with the new model's; then it loads the
        EMA strictly. The finding names the part that fails and both group sizes.
    Why it zeroes P and R:
        There is no run to zero: train.py stops before the first epoch. Measured with YOLOv7
        (a207844): the seed recipe from the tiny run's epoch_002.pt transferred 44/362 items,
        then raised `ValueError: loaded state dict contains a parameter group that doesn't
        match the size of optimizer's group` (groups of 61, 58, 58 tensors saved, 64, 61, 61
        needed); the same checkpoint into yolov7-tiny.yaml loads and fine-tunes.
    Why it is an error:
        train.py raises the ValueError (or, for the EMA, a RuntimeError) on the optimizer
        load, so no epoch of the edited model is ever trained.
    Example:
        yolodiag weights yolov7-tiny-resnet18.yaml --weights epoch_002.pt --nc 3
    Fix:
        Strip the checkpoint first (YOLOv7's `utils/general.py strip_optimizer`, which sets
        the optimizer and EMA to None, as train.py does for last.pt and best.pt at the end of
        a run), or start from weights of the same architecture.
    """
    failed = facts.transfer.state_error
    if failed is None:
        return
    yield Problem(
        f"after transferring {facts.transfer.transferred}/{facts.transfer.total} items "
        f"train.py loads the checkpoint's {failed.part} state and stops with {failed.error}: "
        f"it saved {failed.saved}, this model needs {failed.needed}",
        "strip the checkpoint's optimizer and EMA first (strip_optimizer), or use weights of "
        "this architecture", facts.where(),
        {"part": failed.part, "saved": failed.saved, "needed": failed.needed,
         "error": failed.error})
