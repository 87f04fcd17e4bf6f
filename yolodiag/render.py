"""Renderers: one Report -> text (rich) or JSON. They format; they decide nothing.

Text goes to a rich Console: the model table (YOLOv5's summary columns plus output shape,
stride and GFLOPs), the findings grouped by severity, and a one-line summary. JSON is the
stable `yolodiag.report/1` document.
"""

from __future__ import annotations

import json
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from yolodiag.findings import Severity
from yolodiag.report import ModelSection, Report

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def render(report: Report, fmt: str, console: Console) -> None:
    if fmt == "json":
        console.file.write(to_json(report) + "\n")
    else:
        render_text(report, console)


def to_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2)


def render_text(report: Report, console: Console) -> None:
    model = report.model
    if model is not None:
        console.print(_title(report.command, model))
        console.print(model_table(model, console.width))
        console.print(_model_line(model))
    for severity in Severity:
        group = [f for f in report.findings if f.severity is severity]
        if not group:
            continue
        console.print(f"\n[{_STYLE[severity]}]{severity.value}s ({len(group)})[/]")
        for f in group:
            where = f.location.prefix()
            console.print(f"  [{_STYLE[severity]}]{f.code}[/] {f.name}: {escape(f.message)}"
                          + (f"\n    at {escape(where)}" if where else "")
                          + (f"\n    fix: {escape(f.hint)}" if f.hint else ""), highlight=False)
    summary = report.summary
    console.print(f"\n{summary['error']} errors, {summary['warning']} warnings, "
                  f"{summary['info']} info; exit code {report.exit_code}", highlight=False)


def _title(command: str, model: ModelSection) -> str:
    what = f"yolodiag {command}: {escape(model.path)}"
    if model.bundled:
        what += ("\n[bold]This is the bundled example[/] (the seed's ResNet-18 BasicBlock backbone"
                 " under the YOLOv5s head); pass a model YAML to check your own.")
    return what


def _model_line(model: ModelSection) -> str:
    h, w = model.img
    line = (f"{len(model.layers)} layers, {model.params:,} parameters, "
            f"{model.gflops:.1f} GFLOPs at {h}x{w}")
    if model.detect:
        head = model.detect["layer"]
        strides = ", ".join(str(s) for s in model.detect["strides"])
        grids = ", ".join(detection_grids(model.layers[head].out_shape))
        line += f"\nDetect (layer {head}): strides {strides}; grids {grids} at {h}x{w}"
    return line


def model_table(model: ModelSection, width: int = 120) -> Table:
    """YOLOv5's summary columns plus out shape, stride and GFLOPs. `arguments` is cut with an
    ellipsis, and left out below 100 columns; the JSON report has them whole."""
    h, w = model.img
    layers = model.layers
    columns = [
        ("#", "right", [str(r.index) for r in layers]),
        ("from", "right", [_from(r.from_) for r in layers]),
        ("n", "right", [str(r.n) for r in layers]),
        ("params", "right", [f"{r.params:,}" for r in layers]),
        ("module", "left", [r.module for r in layers]),
        ("arguments", "left", [repr(r.args) for r in layers]),
        (f"out @{h}x{w}", "left", [format_shape(r.out_shape) for r in layers]),
        ("stride", "right", ["" if r.stride is None else str(r.stride) for r in layers]),
        ("GFLOPs", "right", [f"{r.gflops:.2f}" for r in layers]),
    ]
    if width < 100:
        columns = [c for c in columns if c[0] != "arguments"]
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for header, justify, cells in columns:
        if header == "arguments":
            table.add_column(header, overflow="ellipsis", no_wrap=True, max_width=30)
        else:
            table.add_column(header, justify=justify, no_wrap=True,
                             min_width=max(len(header), *map(len, cells)))
    for row in zip(*(cells for _, _, cells in columns)):
        table.add_row(*map(Text, row))
    return table


def format_shape(shape: Any) -> str:
    """Output shape without the batch dimension: [1, 32, 320, 320] -> 32x320x320; for a layer
    with several outputs (the head), how many."""
    if shape is None:
        return "-"
    if all(isinstance(d, int) for d in shape):
        return "x".join(map(str, shape[1:]))
    return f"{len(shape)} outputs"


def detection_grids(shape: Any) -> list[str]:
    """The head's raw maps (batch, anchors, H, W, outputs) as 'HxW' per level."""
    return [f"{s[2]}x{s[3]}" for s in _leaves(shape) if len(s) == 5]


def _leaves(shape: Any) -> list[list[int]]:
    if all(isinstance(d, int) for d in shape):
        return [shape]
    return [leaf for s in shape for leaf in _leaves(s)]


def _from(from_: Any) -> str:
    return str(from_).replace(" ", "")
