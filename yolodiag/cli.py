"""The `yolodiag` command line: parse options, call one function in `commands`, render, exit.

Thin on purpose. torch is imported only inside the command bodies, so `yolodiag --help` is
instant. Results go to stdout (or --output); errors go to stderr as one line naming file, line
and layer. Exit codes (also in report.py): 0 nothing at or above --fail-on, 1 findings at or
above it, 2 bad input or usage, 3 internal error. Tracebacks only with --debug.
"""

from __future__ import annotations

import enum
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

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
    """Commands: check, gradflow, explain, rules (overfit, weights, run come later)."""


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
GRADFLOW_MODEL_HELP = ("Model YAML (YOLOv5 format). Omitted: the bundled example, the seed's "
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
) -> None:
    """Find what will keep an edited YOLOv5 model at zero precision and recall.

    Builds the model YOLOv5 v7.0 would build from each YAML, traces it on the meta device (no
    weights allocated) at every --img size, and checks wiring, channels, strides, grids,
    anchors and cost. Nothing in the YAML is evaluated. Exit codes: 0 nothing at or above
    --fail-on, 1 findings at or above it, 2 bad input, 3 internal error.
    """
    from yolodiag.checks import Selection
    from yolodiag.findings import Severity

    sizes = parse_sizes(img)
    selection = Selection(parse_prefixes(select, "--select"), parse_prefixes(ignore, "--ignore"))

    def run() -> Run:
        from yolodiag import commands

        return Run("check", [commands.check(model, sizes, selection=selection,
                                            fail_on=Severity(fail_on.value))
                             for model in (models or [None])])

    _finish(run, fmt, output, debug)


class Device(str, enum.Enum):
    cpu = "cpu"
    cuda = "cuda"


@app.command()
def gradflow(
    model: Path | None = typer.Argument(None, help=GRADFLOW_MODEL_HELP, show_default=False),
    img: str = typer.Option("256", "--img", help="Input size, N or HxW; rounded up to the "
                            "largest stride."),
    batch: int = typer.Option(2, "--batch", min=1, help="Images in the synthetic batch."),
    device: Device = typer.Option(Device.cpu, "--device", help="Where the model runs."),
    seed: int = typer.Option(0, "--seed", help="Seeds the weights and the synthetic batch."),
    plot: Path | None = typer.Option(None, "--plot", help="Also write a PNG bar chart of the "
                                     "per-layer gradient norms (needs matplotlib: "
                                     "pip install 'yolodiag[plot]')."),
    select: list[str] = SELECT_OPTION,
    ignore: list[str] = IGNORE_OPTION,
    fail_on: FailOn = FAIL_ON_OPTION,
    fmt: OutputFormat = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
    debug: bool = DEBUG_OPTION,
) -> None:
    """Measure per-layer gradients of one real YOLOv5 loss backward, and what the residual
    shortcuts carry.

    Builds the model with seeded random weights, runs one train-mode forward and backward of
    YOLOv5's loss on a synthetic batch (the total, then box, objectness and class alone), and
    again with every residual shortcut removed. Reports per layer the gradient norm, its ratio
    to the weight norm, exactly-zero gradients and dead ReLU units, per stride stage, per
    residual block the gradient through shortcut and branch; checks YD601-YD607.
    """
    from yolodiag.checks import Selection
    from yolodiag.findings import Severity

    sizes = parse_sizes([img])
    if len(sizes) != 1:
        raise typer.BadParameter("give one size", param_hint="--img")
    selection = Selection(parse_prefixes(select, "--select"), parse_prefixes(ignore, "--ignore"))
    if plot is not None:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            stderr.print("yolodiag: --plot needs matplotlib: pip install 'yolodiag[plot]'",
                         markup=False)
            raise typer.Exit(EXIT_BAD_INPUT)

    def run() -> Run:
        import torch

        from yolodiag import commands

        if device is Device.cuda and not torch.cuda.is_available():
            raise Unsupported(f"--device cuda: CUDA is not available to this torch "
                              f"({torch.__version__})")
        return Run("gradflow", [commands.gradflow(model, sizes[0], batch=batch,
                                                  device=device.value, seed=seed,
                                                  selection=selection,
                                                  fail_on=Severity(fail_on.value))])

    def write_plot(result: Run) -> None:
        report = result.reports[0]
        if plot is None or "gradflow" not in report.sections:
            return
        from yolodiag.plot import gradflow_png

        try:
            gradflow_png(report, plot)
        except OSError as e:
            stderr.print(f"{plot}: cannot write the plot: {e.strerror or e}", markup=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None

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
        if debug:
            traceback.print_exc()
        stderr.print(f"yolodiag: internal error: {type(e).__name__}: {e} "
                     "(rerun with --debug for the traceback)", markup=False)
        raise typer.Exit(EXIT_INTERNAL) from None
    from yolodiag.render import render

    for report in result.reports:  # whatever the format, stderr says what went wrong
        if debug:
            for error in report.errors:
                traceback.print_exception(error)
        for finding in filter(None, [report.refused, *report.internal_errors]):
            stderr.print(finding.one_line(), markup=False)
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
            stderr.print(f"{output}: cannot write the report: {e.strerror or e}", markup=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    if after is not None:
        after(result)
    raise typer.Exit(result.exit_code)


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
