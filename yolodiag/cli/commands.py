"""The `yolodiag` commands (check, gradflow, overfit, explain, rules; `fix`, `weights` and
`run` have modules of their own): each parses its options, calls one function in
yolodiag.commands and hands the work to `_finish`, which renders and exits.

Thin on purpose: no checking, building or rendering here, and torch is imported only inside the
command bodies (through yolodiag.commands), so `yolodiag --help` is instant. The options that
several commands share come from options.py; an option only one command has is declared in its
signature. Parameters are keyword-only (see options.py). A docstring here is the command's
`--help` text.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from yolodiag.cli.app import _finish, _write, app, stderr
from yolodiag.cli.options import (
    DataOption,
    DebugOption,
    DeviceOption,
    DialectOption,
    FailOn,
    FailOnOption,
    FormatOption,
    IgnoreOption,
    ModelArgument,
    ModelsArgument,
    ModulesOption,
    NcOption,
    OutputFormat,
    OutputOption,
    RuleOption,
    ScaleOption,
    SeedOption,
    SelectOption,
    SizeOption,
    SizesOption,
    _check_device,
    _one_run_inputs,
    _require,
    parse_dialect,
    parse_selection,
    parse_sizes,
    user_modules,
)
from yolodiag.findings import Unsupported
from yolodiag.report import EXIT_BAD_INPUT, Run


@app.command()
def check(
    *,
    models: ModelsArgument = None,
    img: SizesOption,
    select: SelectOption,
    ignore: IgnoreOption,
    fail_on: FailOnOption = FailOn.error,
    fmt: FormatOption = OutputFormat.text,
    output: OutputOption = None,
    debug: DebugOption = False,
    weights: Annotated[Path | None, typer.Option(
        "--weights", help="Also show what train.py --weights X.pt --cfg MODEL would "
                          "transfer.")] = None,
    nc: NcOption = None,
    modules: ModulesOption,
    rule: RuleOption,
    dialect: DialectOption = "auto",
    scale: ScaleOption = None,
    repo: Annotated[str | None, typer.Option(
        "--repo", show_default=False,
        help="Build with your own YOLOv5, YOLOv7 or Ultralytics code (the YAML's family): a "
             "checkout (models/yolo.py or ultralytics/nn/tasks.py), the installed package's "
             "folder, or `pip` for the installed package. RUNS THAT CODE, in a "
             "subprocess; its layers come back for every check.")] = None,
    repo_python: Annotated[str | None, typer.Option(
        "--repo-python", show_default=False,
        help="The Python interpreter that runs --repo (one with its requirements; default: "
             "this one).")] = None,
    data: DataOption = None,
    picture: Annotated[Path | None, typer.Option(
        "--picture", help="Also draw the model by stride, its findings marked, to this .png "
                          "or .svg (one model; needs matplotlib).")] = None,
) -> None:
    """Find what will keep an edited YOLOv5 model at zero precision and recall.

    Builds the model YOLOv5 v7.0 would build from each YAML, traces it on the meta device (no
    weights allocated) at every --img size, and checks wiring, channels, strides, grids,
    anchors and cost. Nothing in the YAML is evaluated. Exit codes: 0 nothing at or above
    --fail-on, 1 findings at or above it, 2 bad input, 3 internal error.
    """
    from yolodiag.findings import Severity

    sizes = parse_sizes(img)
    selection = parse_selection(select, ignore)
    dialect = parse_dialect(dialect)
    _require("PIL", "--data", "data", data)
    _require("matplotlib", "--picture", "plot", picture)
    if picture is not None and len(models or [None]) > 1:
        raise typer.BadParameter("--picture draws one model: give one YAML")

    def draw(result: Run) -> None:
        report = result.reports[0]
        if picture is not None and report.model is not None:
            from yolodiag.picture import model_picture

            _write(picture, "picture", lambda: model_picture(report, picture))

    def run() -> Run:
        from yolodiag import commands

        # One module table for all the YAMLs: in the first one's dialect.
        blocks = user_modules(modules, rule, (models or [None])[0], dialect)
        return Run("check", [commands.check(model, sizes, selection=selection,
                                            fail_on=Severity(fail_on.value), weights=weights,
                                            nc=nc, modules=blocks, repo=repo,
                                            repo_python=repo_python, data=data,
                                            dialect=dialect, scale=scale)
                             for model in (models or [None])])

    _finish(run, fmt, output, debug, after=draw)


@app.command()
def gradflow(
    *,
    model: ModelArgument = None,
    img: SizeOption = None,  # None: the family's size (256; Ultralytics 640)
    batch: Annotated[int, typer.Option("--batch", min=1,
                                       help="Images in the synthetic batch.")] = 2,
    device: DeviceOption = "cpu",
    seed: SeedOption = 0,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Also write a PNG bar chart of the per-layer gradient norms (needs "
                       "matplotlib: pip install 'yolodiag[plot]').")] = None,
    select: SelectOption,
    ignore: IgnoreOption,
    fail_on: FailOnOption = FailOn.error,
    fmt: FormatOption = OutputFormat.text,
    output: OutputOption = None,
    debug: DebugOption = False,
    modules: ModulesOption,
    rule: RuleOption,
    dialect: DialectOption = "auto",
    data: DataOption = None,
) -> None:
    """Measure per-layer gradients of one real YOLOv5 loss backward, and what the residual
    shortcuts carry.

    Builds the model with seeded random weights, runs one train-mode forward of YOLOv5's loss
    on a synthetic batch and a backward of its box, objectness and class terms in turn (their
    sum is the total's gradient), and again with every residual shortcut removed. Reports per
    layer the gradient norm, its ratio to the weight norm, exactly-zero gradients and dead ReLU
    units, per stride stage, per residual block the gradient through shortcut and branch;
    checks YD601-YD607.
    """
    from yolodiag.findings import Severity

    size, selection = _one_run_inputs(img, device, select, ignore)
    dialect = parse_dialect(dialect)
    _require("matplotlib", "--plot", "plot", plot)
    _require("PIL", "--data", "data", data)

    def run() -> Run:
        from yolodiag import commands

        _check_device(device)
        return Run("gradflow", [commands.gradflow(model, size, batch=batch,
                                                  device=device, seed=seed,
                                                  selection=selection,
                                                  fail_on=Severity(fail_on.value),
                                                  modules=user_modules(modules, rule, model,
                                                                       dialect),
                                                  data=data, dialect=dialect)])

    def write_plot(result: Run) -> None:
        report = result.reports[0]
        if plot is None or "gradflow" not in report.sections:
            return
        from yolodiag.plot import gradflow_png

        _write(plot, "plot", lambda: gradflow_png(report, plot))

    _finish(run, fmt, output, debug, after=write_plot)


@app.command()
def overfit(
    *,
    model: ModelArgument = None,
    batch: Annotated[int, typer.Option("--batch", min=1,
                                       help="Images in the one batch trained on.")] = 2,
    steps: Annotated[int, typer.Option(
        "--steps", min=1, help="Most optimiser steps; the run stops when eval-mode mAP@0.5 "
                               "reaches 0.5.")] = 300,
    img: SizeOption = "256",
    device: DeviceOption = "cpu",
    amp: Annotated[bool, typer.Option("--amp", help="Autocast: float16 with a GradScaler on "
                                      "CUDA, bfloat16 on the CPU.")] = False,
    seed: SeedOption = 0,
    tensorboard: Annotated[Path | None, typer.Option(
        "--tensorboard", help="Also write the history as TensorBoard event files into this "
                              "folder as the run goes (needs tensorboard: pip install "
                              "'yolodiag[tensorboard]').")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Also write a PNG of the loss and mAP curves (needs "
                       "matplotlib).")] = None,
    select: SelectOption,
    ignore: IgnoreOption,
    fail_on: FailOnOption = FailOn.error,
    fmt: FormatOption = OutputFormat.text,
    output: OutputOption = None,
    debug: DebugOption = False,
    modules: ModulesOption,
    rule: RuleOption,
    dialect: DialectOption = "auto",
    data: DataOption = None,
) -> None:
    """Overfit one batch: the decisive experiment when precision and recall stay at zero.

    Runs check's checks, then trains a copy of the model (seeded weights) on one synthetic
    batch with YOLOv5's loss and SGD settings, evaluating the batch in train and eval mode with
    val.py's thresholds, until eval-mode mAP@0.5 reaches 0.5 or the steps run out; checks
    YD701-YD706 say why it did not (`yolodiag explain YD701` states the settings).
    """
    from yolodiag.findings import Severity

    size, selection = _one_run_inputs(img, device, select, ignore)
    dialect = parse_dialect(dialect)
    _require("matplotlib", "--plot", "plot", plot)
    _require("tensorboard", "--tensorboard", "tensorboard", tensorboard)
    _require("PIL", "--data", "data", data)

    def run() -> Run:
        from yolodiag import commands
        from yolodiag.progress import fit_progress

        _check_device(device)
        blocks = user_modules(modules, rule, model, dialect)
        with _event_stream(tensorboard) as events, fit_progress(stderr, steps,
                                                                 events) as progress:
            report = commands.overfit(model, size, batch=batch, steps=steps, device=device,
                                      amp=amp, seed=seed, selection=selection,
                                      fail_on=Severity(fail_on.value), modules=blocks,
                                      progress=progress, data=data, dialect=dialect)
        return Run("overfit", [report])

    def write_extras(result: Run) -> None:
        report = result.reports[0]
        if report.sections.get("overfit") is None:
            return
        if plot is not None:
            from yolodiag.plot import overfit_png

            _write(plot, "plot", lambda: overfit_png(report, plot))

    _finish(run, fmt, output, debug, after=write_extras)


@contextlib.contextmanager
def _event_stream(folder: Path | None):
    """--tensorboard: the event files, written as the run goes (None without the option)."""
    if folder is None:
        yield None
        return
    from yolodiag.events import OverfitEvents

    try:
        events = OverfitEvents(folder)
    except OSError as e:
        raise Unsupported(f"{folder}: cannot write the event files: {e.strerror or e}") from None
    try:
        yield events
    finally:
        events.close()


@app.command()
def explain(
    code: Annotated[str, typer.Argument(help="A finding code, e.g. YD301.")],
) -> None:
    """Print a finding's documentation: what it detects, why it zeroes P and R, an example,
    the fix."""
    from yolodiag.checks import REGISTRY
    from yolodiag.render import explain_text

    info = REGISTRY.get(code.strip().upper())
    if info is None:
        stderr.print(f"yolodiag: unknown code {code!r} (see `yolodiag rules`)", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    typer.echo(explain_text(info))


@app.command()
def rules() -> None:
    """List every finding code with its name, severity and stage."""
    from yolodiag.checks import REGISTRY
    from yolodiag.render import rules_table

    console = Console(highlight=False)
    if not console.is_terminal:  # pipes and CI logs: one row per line where possible
        console = Console(highlight=False, width=160)
    console.print(rules_table(REGISTRY.values()))
