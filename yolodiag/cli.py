"""The `yolodiag` command line: parse options, call one function in `commands`, render, exit.

Thin on purpose. torch is imported only inside the command bodies, so `yolodiag --help` is
instant. Results go to stdout (or --output); errors go to stderr as one line naming file, line
and layer. Exit codes (also in report.py): 0 nothing at or above --fail-on, 1 findings at or
above it, 2 bad input or usage, 3 internal error. Tracebacks only with --debug.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from yolodiag.findings import InputRefused, Unsupported
from yolodiag.report import EXIT_BAD_INPUT, EXIT_INTERNAL, Run

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Find why an edited YOLOv5 model will train to zero precision and recall, before "
         "you spend a GPU-week on it.",
)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        from yolodiag import __version__

        typer.echo(f"yolodiag {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Commands: check, gradflow, overfit, weights, run, explain, rules."""


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"
    sarif = "sarif"
    junit = "junit"
    github = "github"


class FailOn(str, enum.Enum):
    error = "error"
    warning = "warning"
    info = "info"


MODEL_HELP = ("Model YAML(s) (YOLOv5 format); several give one summary and one exit code. "
              "Omitted: the bundled example, the seed's ResNet-18 BasicBlock backbone under the "
              "YOLOv5s head.")
ONE_MODEL_HELP = ("Model YAML (YOLOv5 format). Omitted: the bundled example, the seed's "
                  "ResNet-18 BasicBlock backbone under the YOLOv5s head.")
IMG_HELP = ("Input size to trace: N for NxN or HxW (height x width), e.g. 384x640; repeat the "
            "option or separate with commas for several sizes. The first is the report's size. "
            "Sizes are rounded up to the largest stride, as YOLOv5 does (YD305). "
            "Default: 640, 320 and 384x640.")
SELECT_HELP = ("Run only checks whose code starts with one of these prefixes (repeat or comma-"
               "separate, e.g. YD3,YD401); also enables on-request checks such as YD308.")
IGNORE_HELP = ("Skip checks whose code starts with one of these prefixes. A refused YAML "
               "(YD100-YD105) or a model that cannot be built (YD202) is always reported.")
FAIL_ON_HELP = "Exit 1 when a finding has this severity or a higher one."


# The options every reporting command shares (typer reads one OptionInfo in each signature).
SELECT_OPTION = typer.Option([], "--select", help=SELECT_HELP, show_default=False)
IGNORE_OPTION = typer.Option([], "--ignore", help=IGNORE_HELP, show_default=False)
FAIL_ON_OPTION = typer.Option(FailOn.error, "--fail-on", help=FAIL_ON_HELP)
FORMAT_OPTION = typer.Option(OutputFormat.text, "--format", "-f", help="Output format.")
OUTPUT_OPTION = typer.Option(None, "--output", "-o",
                             help="Write the report to this file instead of stdout.")
DEBUG_OPTION = typer.Option(False, "--debug", help="Show tracebacks.")
# The user's own blocks, on every command that builds a model.
MODULES_OPTION = typer.Option(
    [], "--modules", show_default=False,
    help="A Python file with your own blocks (classes as pasted into YOLOv5's common.py); "
         "repeatable. The file is EXECUTED, with torch, nn, F, math, np and yolodiag's Conv, "
         "C3, autopad... in scope; its nn.Module classes join the module table and may replace "
         "stock names. Channel rules: YOLODIAG_RULES = {'Name': 'channels'} in the file, or "
         "--rule.")
RULE_OPTION = typer.Option(
    [], "--rule", show_default=False,
    help="Name=rule: how parse_model completes that module's row; repeatable. Rules: channels, "
         "channels+repeats, passthrough, out=args0, input, concat-sum, concat-max, detect. "
         "Undeclared --modules blocks get a rule inferred from their constructor (YD110).")
DATA_OPTION = typer.Option(
    None, "--data", show_default=False,
    help="A YOLOv5 data YAML: its splits and labels are checked as train.py reads them "
         "(YD801-YD803, YD109, YD405 on the train labels), and the model gets its class "
         "count (needs Pillow: pip install 'yolodiag[data]').")
# ... and those of the commands that run the model once (gradflow, overfit).
ONE_IMG_OPTION = typer.Option("256", "--img", help="Input size, N or HxW; rounded up to the "
                              "largest stride.")
DEVICE_OPTION = typer.Option("cpu", "--device", help="cpu, cuda or cuda:K.")
SEED_OPTION = typer.Option(0, "--seed", help="Seeds the weights and the synthetic batch.")
NC_OPTION = typer.Option(None, "--nc", min=1, help="The data's class count, which train.py "
                         "builds the model with (default: the YAML's nc).")


def parse_sizes(values: list[str]) -> tuple[tuple[int, int], ...]:
    """['640', '320,640x384'] -> ((640, 640), (320, 320), (640, 384)); BadParameter otherwise."""
    sizes = []
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            parts = item.lower().split("x")
            if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
                raise typer.BadParameter(f"{item!r} is not N or HxW with positive integers",
                                         param_hint="--img")
            h = int(parts[0])
            sizes.append((h, int(parts[-1])))
    if values and not sizes:
        raise typer.BadParameter("give at least one size", param_hint="--img")
    return tuple(dict.fromkeys(sizes))


def parse_prefixes(values: list[str], option: str) -> tuple[str, ...]:
    """['YD3,yd401'] -> ('YD3', 'YD401'); a prefix that matches no code is a usage error."""
    from yolodiag.checks import Selection

    prefixes = tuple(p.strip().upper() for v in values for p in v.split(",") if p.strip())
    unknown = Selection(prefixes).unknown_prefixes()
    if unknown:
        raise typer.BadParameter(f"{', '.join(unknown)} matches no code (see `yolodiag rules`)",
                                 param_hint=option)
    return prefixes


def parse_selection(select: list[str], ignore: list[str]):
    """--select and --ignore as a Selection; an unknown prefix is a usage error."""
    from yolodiag.checks import Selection

    return Selection(parse_prefixes(select, "--select"), parse_prefixes(ignore, "--ignore"))


@app.command()
def check(
    models: list[Path] | None = typer.Argument(None, help=MODEL_HELP, show_default=False),
    img: list[str] = typer.Option([], "--img", help=IMG_HELP, show_default=False),
    select: list[str] = SELECT_OPTION,
    ignore: list[str] = IGNORE_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
    fmt: OutputFormat = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
    debug: bool = DEBUG_OPTION,
    weights: Path | None = typer.Option(None, "--weights", help="Also show what train.py "
                                        "--weights X.pt --cfg MODEL would transfer."),
    nc: int | None = NC_OPTION,
    modules: list[Path] = MODULES_OPTION,
    rule: list[str] = RULE_OPTION,
    repo: str | None = typer.Option(
        None, "--repo", show_default=False,
        help="Build with your own YOLOv5 code instead of yolodiag's: a checkout (a folder "
             "with models/yolo.py), the installed yolov5 package's folder, or `pip` for the "
             "installed package. RUNS THAT CODE, in a subprocess; its layers come back for "
             "every check."),
    repo_python: str | None = typer.Option(
        None, "--repo-python", show_default=False,
        help="The Python interpreter that runs --repo (one with its requirements; default: "
             "this one)."),
    data: Path | None = DATA_OPTION,
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
    _require("PIL", "--data", "data", data)

    def run() -> Run:
        from yolodiag import commands

        blocks = user_modules(modules, rule)
        return Run("check", [commands.check(model, sizes, selection=selection,
                                            fail_on=Severity(fail_on.value), weights=weights,
                                            nc=nc, modules=blocks, repo=repo,
                                            repo_python=repo_python, data=data)
                             for model in (models or [None])])

    _finish(run, fmt, output, debug)


@app.command()
def gradflow(
    model: Path | None = typer.Argument(None, help=ONE_MODEL_HELP, show_default=False),
    img: str = ONE_IMG_OPTION,
    batch: int = typer.Option(2, "--batch", min=1, help="Images in the synthetic batch."),
    device: str = DEVICE_OPTION,
    seed: int = SEED_OPTION,
    plot: Path | None = typer.Option(None, "--plot", help="Also write a PNG bar chart of the "
                                     "per-layer gradient norms (needs matplotlib: "
                                     "pip install 'yolodiag[plot]')."),
    select: list[str] = SELECT_OPTION,
    ignore: list[str] = IGNORE_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
    fmt: OutputFormat = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
    debug: bool = DEBUG_OPTION,
    modules: list[Path] = MODULES_OPTION,
    rule: list[str] = RULE_OPTION,
    data: Path | None = DATA_OPTION,
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
    _require("matplotlib", "--plot", "plot", plot)
    _require("PIL", "--data", "data", data)

    def run() -> Run:
        from yolodiag import commands

        _check_device(device)
        return Run("gradflow", [commands.gradflow(model, size, batch=batch,
                                                  device=device, seed=seed,
                                                  selection=selection,
                                                  fail_on=Severity(fail_on.value),
                                                  modules=user_modules(modules, rule),
                                                  data=data)])

    def write_plot(result: Run) -> None:
        report = result.reports[0]
        if plot is None or "gradflow" not in report.sections:
            return
        from yolodiag.plot import gradflow_png

        _write(plot, "plot", lambda: gradflow_png(report, plot))

    _finish(run, fmt, output, debug, after=write_plot)


@app.command()
def overfit(
    model: Path | None = typer.Argument(None, help=ONE_MODEL_HELP, show_default=False),
    batch: int = typer.Option(2, "--batch", min=1, help="Images in the one batch trained on."),
    steps: int = typer.Option(300, "--steps", min=1, help="Most optimiser steps; the run stops "
                              "when eval-mode mAP@0.5 reaches 0.5."),
    img: str = ONE_IMG_OPTION,
    device: str = DEVICE_OPTION,
    amp: bool = typer.Option(False, "--amp", help="Autocast: float16 with a GradScaler on "
                             "CUDA, bfloat16 on the CPU."),
    seed: int = SEED_OPTION,
    tensorboard: Path | None = typer.Option(None, "--tensorboard", help="Also write the "
                                            "history as TensorBoard event files into this "
                                            "folder as the run goes (needs tensorboard: pip "
                                            "install 'yolodiag[tensorboard]')."),
    plot: Path | None = typer.Option(None, "--plot", help="Also write a PNG of the loss and "
                                     "mAP curves (needs matplotlib)."),
    select: list[str] = SELECT_OPTION,
    ignore: list[str] = IGNORE_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
    fmt: OutputFormat = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
    debug: bool = DEBUG_OPTION,
    modules: list[Path] = MODULES_OPTION,
    rule: list[str] = RULE_OPTION,
    data: Path | None = DATA_OPTION,
) -> None:
    """Overfit one batch: the decisive experiment when precision and recall stay at zero.

    Runs check's checks, then trains a copy of the model (seeded weights) on one synthetic
    batch with YOLOv5's loss and SGD settings, evaluating the batch in train and eval mode with
    val.py's thresholds, until eval-mode mAP@0.5 reaches 0.5 or the steps run out; checks
    YD701-YD706 say why it did not (`yolodiag explain YD701` states the settings).
    """
    from yolodiag.findings import Severity

    size, selection = _one_run_inputs(img, device, select, ignore)
    _require("matplotlib", "--plot", "plot", plot)
    _require("tensorboard", "--tensorboard", "tensorboard", tensorboard)
    _require("PIL", "--data", "data", data)

    def run() -> Run:
        from yolodiag import commands
        from yolodiag.progress import fit_progress

        _check_device(device)
        blocks = user_modules(modules, rule)
        with _event_stream(tensorboard) as events, fit_progress(stderr, steps,
                                                                 events) as progress:
            report = commands.overfit(model, size, batch=batch, steps=steps, device=device,
                                      amp=amp, seed=seed, selection=selection,
                                      fail_on=Severity(fail_on.value), modules=blocks,
                                      progress=progress, data=data)
        return Run("overfit", [report])

    def write_extras(result: Run) -> None:
        report = result.reports[0]
        if report.sections.get("overfit") is None:
            return
        if plot is not None:
            from yolodiag.plot import overfit_png

            _write(plot, "plot", lambda: overfit_png(report, plot))

    _finish(run, fmt, output, debug, after=write_extras)


def user_modules(files: list[Path], rules: list[str]) -> dict:
    """--modules and --rule as module-table entries (runs the files: inside `_finish`, so
    their errors become one line and exit 2)."""
    if not files and not rules:
        return {}
    from yolodiag.usermodules import load_modules

    return load_modules(files, rules)


def _one_run_inputs(img: str, device: str, select: list[str], ignore: list[str]):
    """gradflow's and overfit's shared options, checked: (one size, Selection)."""
    sizes = parse_sizes([img])
    if len(sizes) != 1:
        raise typer.BadParameter("give one size", param_hint="--img")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise typer.BadParameter(f"{device!r} is not cpu, cuda or cuda:K", param_hint="--device")
    return sizes[0], parse_selection(select, ignore)


def _require(package: str, option: str, extra: str, value) -> None:
    """An option that needs an optional package: one line and exit 2 before any work."""
    import importlib.util

    if value is not None and importlib.util.find_spec(package) is None:
        stderr.print(f"yolodiag: {option} needs {package}: pip install 'yolodiag[{extra}]'",
                     markup=False)
        raise typer.Exit(EXIT_BAD_INPUT)


def _check_device(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available():
            raise Unsupported(f"--device {device}: CUDA is not available to this torch "
                              f"({torch.__version__})")
        if index >= torch.cuda.device_count():
            raise Unsupported(f"--device {device}: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")


def _write(path: Path, what: str, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as e:
        stderr.print(f"{path}: cannot write the {what}: {e.strerror or e}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


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


@app.command("weights")
def weights_command(
    model: Path | None = typer.Argument(None, help=ONE_MODEL_HELP, show_default=False),
    weights: Path = typer.Option(..., "--weights", help="The checkpoint train.py is given."),
    cfg: bool = typer.Option(True, "--cfg-given/--no-cfg", help="Whether train.py also gets "
                             "--cfg MODEL (without it, it builds the checkpoint's own YAML)."),
    resume: bool = typer.Option(False, "--resume", help="As train.py --resume: the "
                                "checkpoint's YAML, nothing excluded."),
    nc: int | None = NC_OPTION,
    select: list[str] = SELECT_OPTION,
    ignore: list[str] = IGNORE_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
    fmt: OutputFormat = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
    debug: bool = DEBUG_OPTION,
    modules: list[Path] = MODULES_OPTION,
    rule: list[str] = RULE_OPTION,
) -> None:
    """What train.py v7.0 does with --weights: which model it builds, which tensors it
    transfers into which layers, and which stay random (YD501-YD505, YD510).

    The checkpoint is read without running anything in it: globals outside an allow-list are
    refused (YD504), a corrupt or truncated file (YD508) and another framework's checkpoint
    (YD509) are named for what they are. YOLOv5 need not be installed.
    """
    from yolodiag.findings import Severity

    selection = parse_selection(select, ignore)

    def run() -> Run:
        from yolodiag import commands

        return Run("weights", [commands.weights(model, weights, cfg_given=cfg, resume=resume,
                                                nc=nc, selection=selection,
                                                fail_on=Severity(fail_on.value),
                                                modules=user_modules(modules, rule))])

    _finish(run, fmt, output, debug)


@app.command("run")
def run_command(
    folder: Path = typer.Argument(..., help="A YOLOv5 run folder (runs/train/exp)."),
    cfg: Path | None = typer.Option(None, "--cfg", help="The model YAML the run trained "
                                    "(default: opt.yaml's cfg, where it can be found)."),
    weights: Path | None = typer.Option(None, "--weights", help="The checkpoint it started "
                                        "from (default: opt.yaml's weights, where found); "
                                        "must exist."),
    nc: int | None = typer.Option(None, "--nc", min=1, help="The class count train.py built "
                                  "the model with (default: the run's data YAML, its names "
                                  "winning over its nc, as in YOLOv5 v7.0)."),
    plot: Path | None = typer.Option(None, "--plot", help="Also write a PNG of the run's "
                                     "curves (needs matplotlib)."),
    select: list[str] = SELECT_OPTION,
    ignore: list[str] = IGNORE_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
    fmt: OutputFormat = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
    debug: bool = DEBUG_OPTION,
    modules: list[Path] = MODULES_OPTION,
    rule: list[str] = RULE_OPTION,
) -> None:
    """Post-mortem of a finished YOLOv5 training run: zero metrics (YD506) and their causes
    ranked by evidence (the iterations against train.py's warm-up first), a run that stopped
    before its first epoch (YD507); the cfg checked at the run's size and class count.

    The cfg, weights and data YAML opt.yaml names are looked for in the YOLOv5 checkout train.py
    ran in (the run folder less its save_dir, runs/train/<name>), as given, and beside the run.
    """
    from yolodiag.findings import Severity

    selection = parse_selection(select, ignore)
    _require("matplotlib", "--plot", "plot", plot)

    def run() -> Run:
        from yolodiag import commands

        return Run("run", [commands.run(folder, cfg=cfg, weights=weights, nc=nc,
                                        selection=selection, fail_on=Severity(fail_on.value),
                                        modules=user_modules(modules, rule))])

    def write_plot(result: Run) -> None:
        report = result.reports[0]
        if plot is not None and report.sections.get("run"):
            from yolodiag.plot import run_png

            _write(plot, "plot", lambda: run_png(report, plot))

    _finish(run, fmt, output, debug, after=write_plot)


@app.command()
def explain(code: str = typer.Argument(..., help="A finding code, e.g. YD301.")) -> None:
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


def _finish(run: Callable[[], Run], fmt: OutputFormat, output: Path | None,
            debug: bool, after: Callable[[Run], None] | None = None) -> None:
    """Run a command, render its reports, exit with its code; errors become one stderr line.
    `after` writes what a command writes besides the report (gradflow's plot)."""
    try:
        result = run()
    except (InputRefused, Unsupported) as e:
        if debug:
            traceback.print_exc()
        stderr.print(e.finding.one_line() if isinstance(e, InputRefused) else f"yolodiag: {e}",
                     markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except Exception as e:  # a bug in yolodiag, not the user's input
        _internal_error(e, debug)
    from yolodiag.render import render

    for report in result.reports:  # whatever the format, stderr says what went wrong
        if debug:
            for error in report.errors:
                traceback.print_exception(error)
        for finding in filter(None, [report.refused, *report.internal_errors]):
            stderr.print(finding.one_line(), markup=False)
    try:
        if output is None:
            console = Console(highlight=False)
            if not console.is_terminal:  # CI logs and pipes: do not squeeze the table into 80
                console = Console(highlight=False, width=120)
            render(result, fmt.value, console)
        else:
            try:
                with output.open("w", encoding="utf-8") as f:
                    render(result, fmt.value, Console(file=f, width=160, highlight=False))
            except OSError as e:
                stderr.print(f"{output}: cannot write the report: {e.strerror or e}",
                             markup=False)
                raise typer.Exit(EXIT_BAD_INPUT) from None
        if after is not None:
            after(result)
    except typer.Exit:
        raise
    except Exception as e:  # a renderer's bug must not pass for the command's exit code
        _internal_error(e, debug)
    raise typer.Exit(result.exit_code)


def _internal_error(error: Exception, debug: bool) -> NoReturn:
    """A bug in yolodiag, not the user's input: one stderr line (the traceback with --debug),
    exit code 3."""
    if debug:
        traceback.print_exc()
    stderr.print(f"yolodiag: internal error: {type(error).__name__}: {error} "
                 "(rerun with --debug for the traceback)", markup=False)
    raise typer.Exit(EXIT_INTERNAL) from None


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="yolodiag")
        code = 0
    except SystemExit as e:
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written and flushed; skip the interpreter's teardown, which spends about
    # 0.8 s dismantling torch after a check that takes 3 s in all.
    os._exit(code)


if __name__ == "__main__":
    main()
