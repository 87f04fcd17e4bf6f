"""`check --picture`: the model drawn by stride, from a check report's data (matplotlib, the
`plot` extra). Each layer is a box in the lane of its output stride (1, 2, 4 ... 64; the head's
multi-output layer in a lane of its own above), left to right in YAML order; `from` links are
edges; the Detect inputs and their edges are drawn bold; the lanes the stock design's Detect
reads (the strides its anchors were made for, or the family's stock strides) are shaded; a
layer an error or warning names carries its code. PNG or SVG by the file's suffix; the SVG
keeps its text as text, so codes and layer numbers can be searched. Reads the report only.
"""

from __future__ import annotations

import math
from pathlib import Path

from yolodiag.plot import flagged_layers
from yolodiag.report import Report

LANES = (1, 2, 4, 8, 16, 32, 64)
_BOX, _INPUT, _STOCK = "#dde8f3", "#4a7ab5", "#e3f4e1"
# Where a finding says which strides the design meant (YD301: the anchors'; YD309: stock).
_DESIGN_KEYS = ("designed_for", "stock")


def model_picture(report: Report, path: str | Path) -> None:
    """Write the picture of `report` (a check report with a model table) to `path`."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    model = report.model.as_dict()
    layers, detect = model["layers"], model["detect"] or {}
    head = detect.get("layer")
    lane = {layer["index"]: _lane(layer["stride"]) for layer in layers}
    top = len(LANES)  # the head's own lane
    if head is not None:
        lane[head] = top
    flagged = _flagged(report)
    inputs = set(_sources(layers[head])) if head is not None else set()

    figure = Figure(figsize=(max(8.0, 0.62 * len(layers) + 1.5), 5.2), dpi=100,
                    layout="constrained")
    ax = figure.subplots()
    for stride in _design(report, detect):
        ax.axhspan(_lane(stride) - 0.45, _lane(stride) + 0.45, color=_STOCK, zorder=0)
    for layer in layers:
        for source in _sources(layer):
            if source in lane:
                bold, skip = layer["index"] == head, layer["index"] - source > 1
                # a skip over other boxes of its lane bends, so that the tap it reads shows
                bend = -0.18 if skip and lane[source] == lane[layer["index"]] else 0.0
                ax.annotate("", (layer["index"], lane[layer["index"]]),
                            (source, lane[source]), zorder=1, arrowprops={
                                "arrowstyle": "-", "shrinkA": 0, "shrinkB": 0,
                                "connectionstyle": f"arc3,rad={bend}",
                                "color": _INPUT if bold else "#9aa5b1",
                                "lw": 2.2 if bold else 0.8})
    for layer in layers:
        index = layer["index"]
        code, colour = flagged.get(index, ("", None))
        edge = colour or (_INPUT if index in inputs or index == head else "#6b7785")
        ax.add_patch(matplotlib.patches.FancyBboxPatch(
            (index - 0.42, lane[index] - 0.3), 0.84, 0.6, boxstyle="round,pad=0.02",
            facecolor=_BOX, edgecolor=edge, lw=2.4 if colour or index in inputs else 1.0,
            zorder=2))
        ax.text(index, lane[index] + 0.08, str(index), ha="center", va="center", fontsize=8,
                zorder=3)
        ax.text(index, lane[index] - 0.16, layer["module"][:9], ha="center", va="center",
                fontsize=5.5, zorder=3)
        if code:
            ax.text(index, lane[index] + 0.42, code, ha="center", va="bottom", fontsize=6.5,
                    color=colour, zorder=3)
    ax.set_xlim(-0.8, len(layers) - 0.2)
    ax.set_ylim(-0.7, top + 0.9)
    ax.set_yticks(range(top + 1), [f"stride {s}" for s in LANES] + ["head"], fontsize=8)
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    strides = "/".join(str(_int(s)) for s in detect.get("strides") or []) or "none"
    module = layers[head]["module"] if head is not None else "head"
    ax.set_title(f"yolodiag check: {Path(model['path'] or '').name}: {module} inputs "
                 f"{sorted(inputs)} at strides {strides} (shaded: the design's lanes)",
                 fontsize=10)
    suffix = Path(path).suffix.lower().lstrip(".")
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
        figure.savefig(path, format=suffix if suffix in ("png", "svg") else "png")


def _lane(stride) -> int:
    if not stride:
        return 0
    return min(range(len(LANES)), key=lambda i: abs(math.log2(LANES[i]) - math.log2(stride)))


def _sources(layer: dict) -> list[int]:
    written = layer["from"] if isinstance(layer["from"], list) else [layer["from"]]
    return [layer["index"] + f if f < 0 else f for f in written
            if not (f < 0 and layer["index"] + f < 0)]


def _flagged(report: Report) -> dict[int, tuple[str, str]]:
    """Layer -> (the codes of the errors and warnings naming it, the worst one's colour)."""
    codes, colour = flagged_layers(report)
    return {i: (" ".join(dict.fromkeys(c)), colour[i]) for i, c in codes.items()}


def _design(report: Report, detect: dict) -> list:
    for finding in report.findings:
        for key in _DESIGN_KEYS:
            strides = finding.data.get(key) if isinstance(finding.data, dict) else None
            if strides and all(isinstance(s, (int, float)) for s in strides):
                return list(strides)
    return list(detect.get("strides") or [])


def _int(value) -> int | float:
    return int(value) if float(value).is_integer() else value
