"""YD113-YD115: the scale a YAML with a `scales` table was built at, as its family's code picks
it (the reader refuses a scale the table lacks, YD113), and the channel cap of that scale."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from yolodiag.checks.engine import Facts
from yolodiag.findings import Problem, Severity, Stage, check, describe

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

describe("YD113", "scale-missing", E, Stage.SPEC, refuses=True, doc="""
    What it detects:
        A scale letter (from the file name, or --scale) that the YAML's `scales` table does
        not have: `yolo11x-custom.yaml` whose table holds only n and s.
    Why it zeroes P and R:
        Ultralytics' parse_model indexes the table with the letter and fails with a KeyError
        before the first layer: nothing trains. yolodiag stops with exit code 2.
    Why it is an error:
        Input refused: the real build raises KeyError (exit code 2).
    Example:
        yolodiag check model.yaml --scale s
        scales:
          n: [0.50, 0.25, 1024]
    Fix:
        Add the row to `scales`, or name the file (or pass --scale) with a letter it has.
    """)


@check("YD114", "scale-assumed", W, Stage.SPEC, needs={"scales"})
def scale_assumed(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A YAML with several `scales` rows read under a name with no scale letter
        (`yolo11-resnet18.yaml`): Ultralytics builds the first row (usually n, the smallest)
        and says so only in a warning line of its log.
    Why it zeroes P and R:
        It does not; it trains another model than the one meant (a nano where an s or m was
        planned), and checkpoints of the intended scale share almost no tensor shape with it.
    Why it is a warning:
        The model is sound, only probably not the intended size.
    Example:
        scales:  # no scale letter in the file name: the first row builds
          n: [0.50, 0.25, 1024]
          s: [0.50, 0.50, 1024]
    Fix:
        Name the file with the scale you mean (`yolo11s-resnet18.yaml`), or pass --scale to
        yolodiag and `scale:` in the model dict to Ultralytics.
    """
    spec = facts.spec
    if spec.scale_source != "first":
        return
    yield Problem(spec.scale_reason,
                  f"name the file with the scale you mean, e.g. "
                  f"{_with_letter(facts.path, 's')}, or pass --scale",
                  facts.key_location("scales"), {"scale": spec.scale})


def _with_letter(path: str, letter: str) -> str:
    stem = Path(path).stem
    digits = next((i for i, c in enumerate(stem) if c.isdigit()), None)
    if digits is None:
        return f"{stem}{letter}.yaml"
    end = digits
    while end < len(stem) and stem[end].isdigit():
        end += 1
    return f"{stem[:end]}{letter}{stem[end:]}.yaml"


@check("YD115", "max-channels-caps", INFO, Stage.SPEC, needs={"scales"})
def max_channels_caps(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        Rows whose written width is above the scale's `max_channels`, so that the width built
        is the cap times the width multiple, not what the row says (yolov8l: every 1024 row
        builds 512). A warning when the cap is below every width the rows write, so that every
        such row builds the same width (a `max_channels` of 2 makes them 8 wide).
    Why it zeroes P and R:
        The stock cap does not; a mistyped cap narrows the whole model to a few channels,
        which cannot learn.
    Why it is a warning:
        Only the mistyped cap (below every written width) is a warning; the stock caps are
        information.
    Example:
        scales:
          n: [0.50, 0.25, 2.0]   # max_channels 2: every layer 8 wide
    Fix:
        Set max_channels as the stock tables do (1024 for n/s, 512 or 768 above).
    """
    spec = facts.spec
    cap = spec.max_channels
    widths = [(p.row.index, p.row.args[0]) for p in facts.plan
              if p.done is not None and p.entry.rule.startswith("completed") and p.row.args
              and isinstance(p.row.args[0], (int, float)) and not isinstance(p.row.args[0], bool)]
    capped = [(i, w) for i, w in widths if w > cap]
    if not capped:
        return
    below_all = cap < min(w for _, w in widths)
    rows = ", ".join(str(i) for i, _ in capped[:8]) + (", ..." if len(capped) > 8 else "")
    built = max(8, -(-cap * spec.width_multiple // 8) * 8)
    yield Problem(
        f"max_channels {cap:g} of scale {spec.scale} caps {len(capped)} rows ({rows}): they "
        f"build {built:g} channels (the cap times width {spec.width_multiple:g}), not their "
        "written widths" + ("; the cap is below every written width, so every such row builds "
                            "the same width" if below_all else ""),
        "set max_channels as the stock tables do (1024 for n/s, 512 or 768 above)"
        if below_all else "", facts.key_location("scales"),
        {"max_channels": cap, "rows": [i for i, _ in capped]},
        severity=W if below_all else None)
