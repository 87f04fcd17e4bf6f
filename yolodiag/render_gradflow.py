"""Text for a gradflow report: the per-layer gradient table with log-scale bars, the stride
stages, the residual blocks and the shortcut ablation. Reads the report's `gradflow` section
(the same data the JSON carries); decides nothing.
"""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from yolodiag.report import Report
from yolodiag.shapes import format_runs

BAR_WIDTH = 24
_EIGHTHS = " ▏▎▍▌▋▊▉"
_STAGE_STYLES = ("blue", "cyan")  # alternate stages: the bars show where a stage ends
_FLAG_STYLES = {"error": "bold red", "warning": "yellow"}


def render_gradflow(report: Report, console: Console) -> None:
    section = report.sections["gradflow"]
    h, w = section["img"]
    loss = section["loss"]
    console.print(
        f"One forward and backward of {report.dialect.possessive} loss on {section['batch']} "
        f"{report.batch_source} {h}x{w} ({section['targets']} objects) on "
        f"{section['device']}: loss {loss['total']:.4g} ("
        + ", ".join(f"{term} {value:.4g}" for term, value in loss.items() if term != "total")
        + ")", highlight=False)
    console.print(gradient_table(section, _flags(report)))
    console.print("Stages (layers of one output stride; norms over all their parameters):",
                  highlight=False)
    console.print(stage_table(section))
    residual = section["residual"]
    if residual["adds"]:
        console.print("Residual adds (gradient reaching the block's input through each path):",
                      highlight=False)
        console.print(residual_table(residual["adds"]))
    ablation = residual["ablation"]
    if ablation:
        layers = ", ".join(map(str, ablation["layers"]))
        console.print(
            f"Every shortcut removed ({ablation['removed']}): gradient at layer(s) {layers} "
            f"{_number(ablation['with_shortcuts'])} with, {_number(ablation['without_shortcuts'])}"
            f" without ({_times(ablation['ratio'])}); head {_number(ablation['head_with'])} with,"
            f" {_number(ablation['head_without'])} without; loss {ablation['loss_with']:.4g} "
            f"with, {ablation['loss_without']:.4g} without", highlight=False)


def gradient_table(section: dict[str, Any], flags: dict[int, tuple[str, str]]) -> Table:
    """One row per layer: stride, params, |grad|, |grad|/|w|, zero and dead shares, a bar."""
    layers = section["layers"]
    norms = [layer["grad_norm"] for layer in layers]
    scale = _LogScale([n for n in norms if n and math.isfinite(n)])
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for header, justify in (("#", "right"), ("module", "left"), ("stride", "right"),
                            ("params", "right"), ("|grad|", "right"), ("|grad|/|w|", "right"),
                            ("zero", "right"), ("dead", "right"),
                            ("gradient (log scale)", "left"), ("", "left")):
        table.add_column(header, justify=justify, no_wrap=True)
    shade, previous = 0, object()
    for layer in layers:
        if layer["stride"] != previous:
            shade, previous = 1 - shade, layer["stride"]
        code, severity = flags.get(layer["index"], ("", ""))
        style = _FLAG_STYLES.get(severity, _STAGE_STYLES[shade])
        table.add_row(
            str(layer["index"]), layer["module"],
            "head" if layer["stride"] is None else str(layer["stride"]),
            f"{layer['params']:,}", _number(layer["grad_norm"]) if layer["params"] else "-",
            _number(layer["ratio"]), _percent(layer["zero_fraction"]),
            _percent(layer["dead_fraction"]),
            Text(scale.bar(layer["grad_norm"]) if layer["params"] else "", style=style),
            Text(code, style=_FLAG_STYLES.get(severity, "")))
    return table


def stage_table(section: dict[str, Any]) -> Table:
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    terms = [term for term in section["loss"] if term != "total"]
    for header in ("stride", "layers", "params", "|grad|", "vs head", *terms):
        table.add_column(header, justify="left" if header == "layers" else "right",
                         no_wrap=True)
    for stage in section["stages"]:
        table.add_row("head" if stage["stride"] is None else str(stage["stride"]),
                      format_runs(stage["layers"]), f"{stage['params']:,}",
                      _number(stage["grad_norm"]), _times(stage["to_head"]),
                      *(_number(stage["components"][c]) for c in terms))
    return table


def residual_table(adds: list[dict[str, Any]]) -> Table:
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("block", "type", "shortcut", "at the add", "via shortcut", "via branch",
                   "shortcut share"):
        table.add_column(header, justify="left" if header in ("block", "type", "shortcut")
                         else "right", no_wrap=True)
    for add in adds:
        table.add_row(add["block"], add["block_type"],
                      "identity" if add["identity"] else "projection",
                      _number(add["add_grad"]), _number(add["shortcut_grad"]),
                      _number(add["branch_grad"]), _percent(add["shortcut_share"]))
    return table


class _LogScale:
    """Maps norms to bar lengths: the smallest positive norm a tenth of the way, the largest
    the whole width; a bar of no length for zero, "nan" for non-finite."""

    def __init__(self, norms: list[float]):
        self.low = math.log10(min(norms) / 10) if norms else 0.0
        self.high = math.log10(max(norms)) if norms else 1.0

    def bar(self, norm: float | None) -> str:
        if norm is None or not math.isfinite(norm):
            return "nan"
        if norm <= 0:
            return "0"
        span = max(self.high - self.low, 1e-9)
        eighths = round((math.log10(norm) - self.low) / span * BAR_WIDTH * 8)
        eighths = max(1, min(BAR_WIDTH * 8, eighths))
        return "█" * (eighths // 8) + _EIGHTHS[eighths % 8].strip()


def _flags(report: Report) -> dict[int, tuple[str, str]]:
    """Layer -> (codes, worst severity) of the error and warning findings naming it."""
    flags: dict[int, tuple[str, str]] = {}
    for finding in sorted(report.findings, key=lambda f: f.severity.value != "error"):
        if finding.severity.value not in _FLAG_STYLES:
            continue
        layers = finding.data.get("layers") or [finding.location.layer]
        for index in filter(lambda i: isinstance(i, int), layers):
            codes, severity = flags.get(index, ("", finding.severity.value))
            if finding.code not in codes:
                flags[index] = (f"{codes} {finding.code}".strip(), severity)
    return flags


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"
