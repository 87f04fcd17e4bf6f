"""Why a forward crashed: one classification shared by the checks that explain crashes.

YOLOv5's build runs a forward (the stride probe at 256x256), and training runs more at other
sizes; a crash in either means the model cannot train. Each crash is attributed to exactly one
cause so that one defect gives one finding: a residual add of mismatched maps (YD206), a
Concat of maps of different sizes (YD303), a layer receiving a width it was not built for
(YD201), stacked copies that change the width (YD107), a Detect whose anchor rows do not match
its inputs (YD401), or, when none of these explains it, the raw failure (YD202).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yolodiag.shapes import is_map

if TYPE_CHECKING:
    from yolodiag.checks.engine import Facts


@dataclass(frozen=True)
class Crash:
    layer: int
    error: str
    sizes: tuple[tuple[int, int], ...]  # every traced size (and the probe's) where it happens
    in_shapes: tuple[Any, ...]  # what the layer received, at the first of those sizes
    failed_op: str | None
    cause: str | None  # the code that explains it; None: unexplained (YD202)
    in_probe: bool  # YOLOv5's own build (its stride probe) crashes here


def crashes(facts: Facts) -> list[Crash]:
    """Every layer a forward crashed in, with what it received and the explaining code.
    Checks read it once per model as `facts.crashes`."""
    found: dict[int, dict[str, Any]] = {}
    if facts.trace is not None:
        for size in facts.trace.failures:
            layer = size.layer(size.failed_layer)
            entry = found.setdefault(size.failed_layer, {
                "error": size.error, "sizes": [], "in_shapes": layer.in_shapes if layer else (),
                "failed_op": size.failed_op,
                "failed_add": any(a.failed and a.layer == size.failed_layer for a in size.adds)})
            entry["sizes"].append(size.img)
    probe = facts.built.probe_failure if facts.built else None
    if probe is not None:
        size = facts.dialect.model.PROBE_SIZE
        entry = found.setdefault(probe[0], {"error": probe[1], "sizes": [], "in_shapes": (),
                                            "failed_op": None, "failed_add": False})
        entry["sizes"].insert(0, (size, size))
        entry["error"] = probe[1]  # the message names the shapes of the size it is shown with
    return [Crash(layer, e["error"], tuple(dict.fromkeys(e["sizes"])), e["in_shapes"],
                  e["failed_op"], _cause(facts, layer, e["in_shapes"], e["failed_add"]),
                  probe is not None and probe[0] == layer)
            for layer, e in sorted(found.items())]


def feature_maps(in_shapes: tuple[Any, ...]) -> list[list[int]]:
    """The 4-D input shapes of a layer (a multi-input layer receives one list of them)."""
    if len(in_shapes) == 1 and isinstance(in_shapes[0], list) and in_shapes[0] \
            and isinstance(in_shapes[0][0], list):
        in_shapes = tuple(in_shapes[0])
    return [s for s in in_shapes if is_map(s)]


def built_for(facts: Facts, index: int) -> tuple[int, ...] | None:
    """The input widths layer `index` was constructed for, where that is knowable."""
    from torch import nn

    record = facts.record(index)
    if record.rule in ("channels", "channels+repeats", "batchnorm"):
        return (record.args[0],)
    if record.rule in ("detect", "segment"):
        return tuple(record.args[-1])
    if facts.built.model is None:  # built by the user's YOLOv5 (--repo), in its own process
        return None
    module = facts.built.model.model[index]
    first = module[0] if isinstance(module, nn.Sequential) and record.number > 1 else module
    width = getattr(first, "in_channels", None)
    return (width,) if isinstance(width, int) else None


def _cause(facts: Facts, index: int, in_shapes: tuple[Any, ...], failed_add: bool) -> str | None:
    if failed_add:
        return "YD206"
    record = facts.record(index)
    maps = feature_maps(in_shapes)
    if record.rule in ("concat-sum", "concat-max") and len({tuple(m[2:]) for m in maps}) > 1:
        return "YD303"
    expected = built_for(facts, index)
    if maps and expected is not None and len(expected) == len(maps) \
            and tuple(m[1] for m in maps) != expected:
        return "YD201"
    planned = facts.plan[index]
    done = planned.done
    if record.rule == "channels" and done is not None and done.copies > 1 \
            and done.args[0] != done.args[1]:
        return "YD107"
    if record.rule in ("detect", "segment") and isinstance(facts.spec.anchors, tuple) \
            and len(facts.spec.anchors) != len(planned.inputs):
        return "YD401"
    return None
