"""The checkpoint's width against the cfg's (YD510): a checkpoint trained at another
width_multiple shares almost no tensor shape with the model, so train.py's transfer is
training from scratch; YD502 and YD503 defer to this one finding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from yolodiag.checks.engine import Facts
from yolodiag.findings import Problem, Severity, Stage, check

STOCK_WIDTHS = {0.25: "yolov5n", 0.5: "yolov5s", 0.75: "yolov5m", 1.0: "yolov5l", 1.25: "yolov5x"}


@dataclass(frozen=True)
class WidthMismatch:
    """The checkpoint's width against the cfg's, and what train.py's intersection still took."""

    checkpoint_width: float
    cfg_width: float
    counters: int  # BatchNorm num_batches_tracked among the transferred items
    coincidental: list[str]  # learnt tensors that transferred because their shapes coincide
    learnt_by_name: int  # learnt tensors outside Detect the checkpoint has under the same key
    learnt_transferred: int  # of those, how many transferred


def width_mismatch(facts: Facts) -> WidthMismatch | None:
    """A width_multiple in the checkpoint's embedded YAML other than the built model's, with
    fewer than half of the learnt tensors it has by name (outside Detect) transferring."""
    transfer, checkpoint = facts.transfer, facts.checkpoint
    theirs = _number((checkpoint.yaml or {}).get("width_multiple"))
    ours = _number(transfer.spec.width_multiple)
    if not transfer.cfg_given or theirs is None or ours is None or theirs == ours:
        return None
    head = len(transfer.spec.layers) - 1
    named = [k for k in transfer.keys if not k.counter and k.layer != head
             and k.status in ("transferred", "shape")]
    learnt_transferred = sum(k.status == "transferred" for k in named)
    if learnt_transferred * 2 >= len(named):
        return None
    moved = [k for k in transfer.keys if k.status == "transferred"]
    return WidthMismatch(theirs, ours, sum(k.counter for k in moved),
                         [k.key for k in moved if not k.counter], len(named),
                         learnt_transferred)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


@check("YD510", "width-mismatch", Severity.WARNING, Stage.CKPT)
def width_mismatch_finding(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A checkpoint trained at another width_multiple than the cfg's (its embedded YAML
        says 0.25, the cfg builds 0.50): every channel count differs, so train.py's
        name-and-shape intersection matches almost nothing. What `Transferred X/Y` still
        counts are BatchNorm's num_batches_tracked counters (0-d, they match any BatchNorm)
        and a few tensors whose shapes coincide (the Detect output biases, na x (nc + 5) at
        any width, when the class counts agree). One finding for the one cause, in place of
        YD502 and a YD503 per layer.
    Why it zeroes P and R:
        It does not by itself: nothing useful transferred, so the run is one from scratch,
        no worse off than with `--weights ''`. Measured: train.py on yolov5n-resnet18.yaml
        with yolov5s.pt (Transferred 25/241, all 25 of them counters) ended its 3 epochs at
        mAP@0.5 0.0043 and recall 0.29, in the range of the from-scratch runs of the s
        recipes (0.0029 to 0.0056, recall 0.26 to 0.39). What it costs is the pretrained
        start: a from-scratch schedule (the released YOLOv5 checkpoints were trained from
        scratch for 300 epochs on COCO) where a fine-tune expected a few dozen, and a short
        run that stays near zero as any from-scratch run does.
    Example:
        yolodiag weights yolov5s.yaml --weights yolov5n.pt
        width_multiple: 0.50   # the checkpoint was trained at 0.25
    Fix:
        Use a checkpoint trained at the cfg's width (yolov5s.pt for 0.50, yolov5n.pt for
        0.25), or set the cfg's width_multiple to the checkpoint's, or train from scratch on
        purpose (`--weights ''`) with the epochs that takes.
    """
    mismatch = width_mismatch(facts)
    if mismatch is None:
        return
    transfer = facts.transfer
    shown = ", ".join(mismatch.coincidental[:4]) + (
        f" and {len(mismatch.coincidental) - 4} more" if len(mismatch.coincidental) > 4 else "")
    same = STOCK_WIDTHS.get(mismatch.cfg_width)
    yield Problem(
        f"the checkpoint was trained at width_multiple {mismatch.checkpoint_width:g}, the cfg "
        f"builds {mismatch.cfg_width:g} (channel counts x"
        f"{mismatch.cfg_width / mismatch.checkpoint_width:.3g}): Transferred "
        f"{transfer.transferred}/{transfer.total} items, of which {mismatch.counters} are "
        "BatchNorm num_batches_tracked counters and "
        + (f"{len(mismatch.coincidental)} tensors whose shapes coincide ({shown}); "
           if shown else "nothing else; ") +
        f"{mismatch.learnt_transferred} of the {mismatch.learnt_by_name} learnt tensors outside "
        f"{facts.head_module} that the checkpoint has by name transfer: nothing useful "
        "transferred: this is training from scratch",
        f"use a checkpoint trained at width_multiple {mismatch.cfg_width:g}"
        + (f" ({same}.pt)" if same else "") + ", or train from scratch on purpose "
        "(--weights '') with the epochs that takes",
        facts.key_location("width_multiple"),
        {"checkpoint_width": mismatch.checkpoint_width, "cfg_width": mismatch.cfg_width,
         "transferred": transfer.transferred, "total": transfer.total,
         "counters": mismatch.counters, "coincidental": mismatch.coincidental,
         "learnt_by_name": mismatch.learnt_by_name,
         "learnt_transferred": mismatch.learnt_transferred})
