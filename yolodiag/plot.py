"""PNG figures of a report, drawn with matplotlib (an optional extra: `yolodiag[plot]`).

`gradflow_png` draws the per-layer gradient norms of a gradflow report as horizontal bars on a
log scale, one row per YAML layer from the stem down to the head, with the stride stages shaded
and the layers a finding names marked with its code. It reads only the report's data, so the
figure shows exactly what the text and JSON say; it never touches a model.
"""

from __future__ import annotations

import math
from pathlib import Path

from yolodiag.report import Report

_STAGE_COLOURS = ("#f2f2f2", "#dde8f3")
_BAR = "#4a7ab5"
FLAGGED = {"error": "#c0392b", "warning": "#e08e0b"}  # info findings are not marked


def gradflow_png(report: Report, path: str | Path) -> None:
    """Write the gradient-norm bar chart of `report` (a gradflow report) to `path`."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    section = report.sections["gradflow"]
    layers = section["layers"]
    flagged, colour = flagged_layers(report)
    rows = range(len(layers))
    norms = [layer["grad_norm"] or 0.0 for layer in layers]
    positive = [n for n in norms if n > 0 and math.isfinite(n)]
    floor = min(positive) / 10 if positive else 1e-12

    figure = Figure(figsize=(9, 1.6 + 0.24 * len(layers)), dpi=100, layout="constrained")
    ax = figure.subplots()
    for start, end, stride, shade in _stage_spans(layers):
        ax.axhspan(start - 0.5, end + 0.5, color=_STAGE_COLOURS[shade], zorder=0)
        label = "head" if stride is None else f"stride {stride}"
        ax.text(1.0, (start + end) / 2, f" {label}", transform=ax.get_yaxis_transform(),
                va="center", ha="left", fontsize=8, color="#555555")
    ends = [n if n > 0 and math.isfinite(n) else floor for n in norms]
    ax.barh(list(rows), [end - floor for end in ends], left=floor, zorder=2,
            color=[colour.get(layer["index"], _BAR) for layer in layers])
    for row, layer, end in zip(rows, layers, ends):
        note = " ".join(sorted(set(flagged.get(layer["index"], []))))
        if not layer["params"]:
            note = "no parameters"
        elif not math.isfinite(layer["grad_norm"] or 0.0):
            note = f"non-finite {note}"
        elif end == floor:
            note = f"no gradient {note}"
        if note:
            ax.text(end, row, " " + note.strip(), va="center", ha="left", fontsize=7,
                    color="#333333", zorder=3)
    ax.set_xscale("log")
    ax.set_yticks(list(rows), [f"{layer['index']} {layer['module']}" for layer in layers],
                  fontsize=8)
    ax.set_ylim(len(layers) - 0.5, -0.5)  # the stem on top, the head at the bottom
    ax.set_xlabel("gradient norm of the layer's parameters (log scale)")
    h, w = section["img"]
    loss = section["loss"]["total"]
    ax.set_title(f"yolodiag gradflow: {Path(report.path or '').name}, {h}x{w}, batch "
                 f"{section['batch']}, loss {loss:.3g}", fontsize=10)
    figure.savefig(path, format="png")


def flagged_layers(report: Report) -> tuple[dict[int, list[str]], dict[int, str]]:
    """Per layer an error or warning names: the codes naming it (errors first) and the colour
    of the worst. Info findings are not marked."""
    flagged: dict[int, list[str]] = {}
    colour: dict[int, str] = {}
    for finding in sorted(report.findings, key=lambda f: f.severity.value != "error"):
        if finding.severity.value not in FLAGGED:
            continue
        for index in layers_named(finding):
            flagged.setdefault(index, []).append(finding.code)
            colour.setdefault(index, FLAGGED[finding.severity.value])
    return flagged, colour


def layers_named(finding) -> list[int]:
    layers = finding.data.get("layers") if isinstance(finding.data, dict) else None
    if isinstance(layers, list) and all(isinstance(i, int) for i in layers):
        return layers
    return [finding.location.layer] if finding.location.layer is not None else []


def _stage_spans(layers: list[dict]) -> list[tuple[int, int, int | None, int]]:
    """Runs of consecutive rows with the same stride: (first row, last row, stride, shade)."""
    spans: list[tuple[int, int, int | None, int]] = []
    for row, layer in enumerate(layers):
        if spans and spans[-1][2] == layer["stride"]:
            spans[-1] = (spans[-1][0], row, layer["stride"], spans[-1][3])
        else:
            spans.append((row, row, layer["stride"], (spans[-1][3] + 1) % 2 if spans else 0))
    return spans


def overfit_png(report: Report, path: str | Path) -> None:
    """Write the loss terms and the train/eval-mode mAP@0.5 of an overfit report to `path`."""
    from matplotlib.figure import Figure

    fit = report.sections["overfit"]
    figure = Figure(figsize=(9, 6), dpi=100, layout="constrained")
    losses, scores = figure.subplots(2, 1, sharex=True)
    steps = [s["step"] for s in fit["steps"]]
    for term in ("loss", *fit["terms"]):
        values = [s[term] for s in fit["steps"]]
        if any(v > 0 for v in values):
            losses.plot(steps, values, label=term, linewidth=2 if term == "loss" else 1)
    losses.set_yscale("log")
    losses.set_ylabel("loss (log scale)")
    losses.legend(loc="upper right", fontsize=8)
    for mode, style in (("train", "--"), ("eval", "-")):
        runs = [e for e in fit["evaluations"] if e["mode"] == mode]
        scores.plot([e["step"] for e in runs], [e["map50"] for e in runs], style, marker=".",
                    label=f"{mode} mode")
    scores.axhline(fit["settings"]["pass_mark"], color="#999999", linewidth=1, linestyle=":")
    if fit["passed_at"] is not None:
        scores.axvline(fit["passed_at"], color="#2e8b57", linewidth=1)
    scores.set_ylim(0, 1.02)
    scores.set_xlabel("step")
    scores.set_ylabel("mAP@0.5 on the batch")
    scores.legend(loc="upper left", fontsize=8)
    h, w = fit["img"]
    losses.set_title(f"yolodiag overfit: {Path(report.path or '').name}, {h}x{w}, batch "
                     f"{fit['batch']}, {fit['device']}", fontsize=10)
    figure.savefig(path, format="png")


def run_png(report: Report, path: str | Path) -> None:
    """Write a finished run's losses and metrics per epoch (results.csv) to `path`."""
    from matplotlib.figure import Figure

    run = report.sections["run"]
    rows = run["results"]
    epochs = [row.get("epoch", i) for i, row in enumerate(rows)]
    figure = Figure(figsize=(9, 6), dpi=100, layout="constrained")
    losses, metrics = figure.subplots(2, 1, sharex=True)
    for name in ("train/box_loss", "train/obj_loss", "train/cls_loss", "val/box_loss",
                 "val/obj_loss", "val/cls_loss"):
        if rows and name in rows[0]:
            losses.plot(epochs, [row[name] for row in rows], label=name,
                        linestyle="--" if name.startswith("val") else "-")
    losses.set_ylabel("loss")
    losses.legend(loc="upper right", fontsize=7, ncols=2)
    for name in ("metrics/precision", "metrics/recall", "metrics/mAP_0.5",
                 "metrics/mAP_0.5:0.95"):
        if rows and name in rows[0]:
            metrics.plot(epochs, [row[name] for row in rows], marker=".", label=name)
    metrics.set_ylim(0, 1.02)
    metrics.set_xlabel("epoch")
    metrics.legend(loc="upper left", fontsize=7)
    losses.set_title(f"yolodiag run: {run['path']}", fontsize=10)
    figure.savefig(path, format="png")
