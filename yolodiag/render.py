"""Renderers: one Run (reports of one or more models) -> text (rich), JSON, SARIF, JUnit or
GitHub annotations. They format; they decide nothing.

Text goes to a rich Console: per model the model table (YOLOv5's summary columns plus output
shape, stride and GFLOPs; for a single model only), the findings grouped by severity, then one
summary line for the whole run. JSON is the stable `yolodiag.report/1` document. The CI formats
live in `render_ci.py`. `explain_text` and `rules_table` render the check registry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from yolodiag.dialects import DEFAULT, DIALECTS
from yolodiag.findings import CheckInfo, Severity
from yolodiag.report import ModelSection, Report, finite
from yolodiag.shapes import format_shape

if TYPE_CHECKING:
    from yolodiag.dialects import Dialect
    from yolodiag.report import Run

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def render(run: Run, fmt: str, console: Console) -> None:
    if fmt == "text":
        render_text(run, console)
        return
    if fmt == "json":
        text = to_json(run)
    else:
        from yolodiag import render_ci

        text = {"sarif": render_ci.to_sarif, "junit": render_ci.to_junit,
                "github": render_ci.to_github}[fmt](run)
    console.file.write(text.rstrip("\n") + "\n")


def to_json(run: Run) -> str:
    """Strict JSON: a non-finite float (an infinite receptive field) becomes null."""
    return json.dumps(finite(run.as_dict()), indent=2, allow_nan=False)


def render_text(run: Run, console: Console) -> None:
    single = len(run.reports) == 1
    if single and run.reports[0].refused is not None:
        return  # the CLI says it on stderr, in one line
    for report in run.reports:
        render_report(report, console, table=single)
    summary = run.summary
    models = "" if single else f" in {len(run.reports)} models"
    console.print(f"\n{summary['error']} errors, {summary['warning']} warnings, "
                  f"{summary['info']} info{models}; exit code {run.exit_code}", highlight=False)


def _render_data(data: dict, console: Console, dialect: Dialect) -> None:
    """--data: where its splits were read, what each holds as train.py reads it, and the
    anchors' fit."""
    console.print(_data_resolution(data, dialect), highlight=False)
    for name, split in data["splits"].items():
        console.print(
            f"data {name}: {split['images']} images, {split['objects']} objects; "
            f"labels missing {split['labels_missing']}, empty {split['labels_empty']}, "
            f"images dropped as corrupt {split['dropped']}"
            + (f"; not found: {', '.join(split['absent'])}" if split["absent"] else ""),
            highlight=False)
    fit = data.get("anchor_fit")
    if fit:
        console.print(f"anchors on the {fit['labels']} train labels at {fit['img']}: best "
                      f"possible recall {fit['bpr']:.4f}, {fit['aat']:.2f} anchors per label "
                      f"above 1/anchor_t ({data['classes']} classes)", highlight=False)


def _data_resolution(data: dict, dialect: Dialect) -> str:
    """Where v7.0's check_dataset looks for the splits, and where they were read (YD804)."""
    where = data["resolution"]
    root = where["yolov5_root"] + ("" if where["root_given"] else ", the working directory")
    written = f"`path: {where['path']}`" if where["path"] else "no `path:`"
    line = (f"data: splits under {where['yolov5_path']}" if Path(where["path"]).is_absolute()
            else f"data: {written} resolved as {dialect.full_title} resolves it, "
                 f"{where.get('rule') or f'against the {dialect.title} root ({root})'}: "
                 f"{where['yolov5_path']}")
    if where["read_as"] == "data-yaml-folder":
        line += (f"; not found there, so read relative to the data YAML's folder instead: "
                 f"{data['root']} (YD804)")
    return escape(line)


def _provenance_lines(report: Report) -> list[str]:
    """--repo: which yolo.py and interpreter built the model; --modules: the yolo.py files
    whose parse_model registrations gave the blocks' rules."""
    repo, modules = report.sections.get("repo"), report.sections.get("modules")
    if repo:
        return [f"built by your {report.dialect.title}: {repo['yolo_py']}, in {repo['python']} "
                f"(Python {repo['python_version']}, torch {repo['torch'] or 'not imported'})"]
    if modules and modules["registrations"]:
        read = [f"{b['name']} {b['rule']}" for b in modules["blocks"] if b["registered_by"]]
        return [f"--modules: rules read from {', '.join(modules['registrations'])} (its "
                f"parse_model, statically): {', '.join(read) or 'no block of this model'}"]
    return []


def render_report(report: Report, console: Console, table: bool = True) -> None:
    """One model: title, table (optional), headline figures, findings by severity."""
    model = report.model
    console.print(_title(report.command, report.path or "", report.bundled))
    if model is not None:
        if table and report.command == "check":  # the others show their own tables
            console.print(model_table(model, console.width))
        console.print(_model_line(model))
    if report.sections.get("gradflow"):
        from yolodiag.render_gradflow import render_gradflow

        render_gradflow(report, console)
    if report.sections.get("overfit"):
        from yolodiag.render_overfit import render_overfit

        render_overfit(report, console)
    if report.sections.get("fix"):
        from yolodiag.render_fix import render_fix

        render_fix(report, console)
    if report.sections.get("run"):
        from yolodiag.render_transfer import render_run

        render_run(report, console)
    if report.sections.get("transfer") or report.sections.get("checkpoint"):
        from yolodiag.render_transfer import render_transfer

        render_transfer(report, console)
    if report.sections.get("data"):
        _render_data(report.sections["data"], console, report.dialect)
    for line in _provenance_lines(report):  # whole, so its paths copy as one
        console.print(line, highlight=False, soft_wrap=True)
    assignment = report.sections.get("assignment")
    if assignment:
        h, w = assignment["img"]
        batch = "a synthetic batch" if assignment["source"] == "synthetic" else (
            "the train labels, letterboxed")
        console.print(f"{report.dialect.possessive} assignment of {batch} "
                      f"({assignment['images']} images, "
                      f"{assignment['targets']} objects, {h}x{w}): positives per level "
                      f"{', '.join(map(str, assignment['positives_per_level']))}; "
                      f"{assignment['unmatched']} objects matched by no anchor",
                      highlight=False)
    for severity in Severity:
        group = [f for f in report.findings if f.severity is severity]
        if not group:
            continue
        console.print(f"[{_STYLE[severity]}]{severity.value}s ({len(group)})[/]")
        for f in group:
            where = f.location.prefix()
            console.print(f"  [{_STYLE[severity]}]{f.code}[/] {f.name}: {escape(f.message)}"
                          + (f"\n    at {escape(where)}" if where else "")
                          + (f"\n    fix: {escape(f.hint)}" if f.hint else ""), highlight=False)
    if not report.findings:
        console.print("no findings")


def explain_text(info: CheckInfo) -> str:
    """`yolodiag explain CODE`: the registered documentation, as the docs show it."""
    request = f", on request: --select {info.code}" if info.on_request else ""
    head = (f"{info.code} {info.name} (default severity {info.severity.value}, stage "
            f"{info.stage.value}{request})")
    if info.needs:
        head += f"\nSkipped for a dialect without {' and '.join(sorted(info.needs))}."
    if info.fixable != "manual":
        head += ("\n`yolodiag fix` applies its fix" + (" with --unsafe (it changes the "
                 "architecture's meaning)." if info.fixable == "unsafe" else "."))
    return f"{head}\n\n{info.doc}\n"


def rules_table(infos: Iterable[CheckInfo]) -> Table:
    """`yolodiag rules`: every code with its name, severity and stage."""
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("code", "name", "severity", "stage", "summary"):
        table.add_column(header, no_wrap=header != "summary")
    for info in sorted(infos, key=lambda i: i.code):
        summary = info.summary
        if info.on_request:
            summary += " (on request)"
        if info.fixable != "manual":
            summary += f" (fix: {info.fixable})"
        table.add_row(info.code, info.name, Text(info.severity.value,
                                                 style=_STYLE[info.severity]),
                      info.stage.value, Text(summary))
    return table


def _title(command: str, path: str, bundled: bool) -> str:
    what = f"\nyolodiag {command}: {escape(path)}"
    if bundled:
        what += (f"\n[bold]This is the bundled example[/] ({DIALECTS[DEFAULT].bundled_note}); "
                 "pass a model YAML to check your own.")
    return what


def _model_line(model: ModelSection) -> str:
    h, w = model.img
    line = (f"{len(model.layers)} layers, {model.params:,} parameters, "
            f"{model.gflops:.1f} GFLOPs at {h}x{w}")
    if model.detect and model.layers[model.detect["layer"]].out_shape:
        head = model.detect["layer"]
        strides = ", ".join(str(s) for s in model.detect["strides"])
        grids = ", ".join(detection_grids(model.layers[head].out_shape) or _input_grids(model))
        line += f"\n{model.layers[head].module} (layer {head}): strides {strides}"
        line += f"; grids {grids} at {h}x{w}" if grids else ""
    if model.dialect:
        line += f"\nread as {model.dialect['title']}: {escape(model.dialect['reason'])}"
        if model.dialect.get("scale"):
            line += f"\nbuilt: {escape(model.dialect['scale']['built'])}"
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


def detection_grids(shape: Any) -> list[str]:
    """The head's raw maps (batch, anchors, H, W, outputs) as 'HxW' per level."""
    return [f"{s[2]}x{s[3]}" for s in _leaves(shape) if len(s) == 5]


def _input_grids(model: ModelSection) -> list[str]:
    """An anchor-free head's grids: its input maps' 'HxW', one per level."""
    head = model.layers[model.detect["layer"]]
    sources = head.from_ if isinstance(head.from_, list) else [head.from_]
    shapes = [model.layers[s if s >= 0 else head.index + s].out_shape for s in sources]
    return [f"{s[2]}x{s[3]}" for s in shapes if s and len(s) == 4]


def _leaves(shape: Any) -> list[list[int]]:
    if shape is None:  # a part of the output that is no tensor (an anchor-free head's dict)
        return []
    if all(isinstance(d, int) for d in shape):
        return [shape]
    return [leaf for s in shape for leaf in _leaves(s)]


def _from(from_: Any) -> str:
    return str(from_).replace(" ", "")
