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

from yolodiag.findings import InputRefused
from yolodiag.report import EXIT_BAD_INPUT, EXIT_INTERNAL, Report

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
    """Commands: check (more come with later releases)."""


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"


MODEL_HELP = ("Model YAML (YOLOv5 format). Omitted: the bundled example, the seed's ResNet-18 "
              "BasicBlock backbone under the YOLOv5s head.")
IMG_HELP = ("Input size to trace: N for NxN or HxW (height x width), e.g. 640x384; repeat the "
            "option or separate with commas for several sizes. The first is the report's size.")


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
    if not sizes:
        raise typer.BadParameter("give at least one size", param_hint="--img")
    return tuple(dict.fromkeys(sizes))


@app.command()
def check(
    model: Path | None = typer.Argument(None, help=MODEL_HELP, show_default=False),
    img: list[str] = typer.Option(["640"], "--img", help=IMG_HELP),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="Output format."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write the report to this file instead of stdout."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Report the model YOLOv5 v7.0 would build from a YAML, layer by layer.

    Wiring, output shapes, strides, parameters and GFLOPs at every --img size, traced on the
    meta device (no weights allocated). Nothing in the YAML is evaluated.
    """
    sizes = parse_sizes(img)

    def run() -> Report:
        from yolodiag import commands

        return commands.check(model, sizes)

    _finish(run, fmt, output, debug)


def _finish(run: Callable[[], Report], fmt: OutputFormat, output: Path | None,
            debug: bool) -> None:
    """Run a command, render its report, exit with its code; errors become one stderr line."""
    try:
        report = run()
    except InputRefused as e:
        if debug:
            traceback.print_exc()
        stderr.print(e.finding.one_line(), markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except Exception as e:  # a bug in yolodiag, not the user's input
        if debug:
            traceback.print_exc()
        stderr.print(f"yolodiag: internal error: {type(e).__name__}: {e} "
                     "(rerun with --debug for the traceback)", markup=False)
        raise typer.Exit(EXIT_INTERNAL) from None
    from yolodiag.render import render

    if output is None:
        console = Console(highlight=False)
        if not console.is_terminal:  # CI logs and pipes: do not squeeze the table into 80
            console = Console(highlight=False, width=120)
        render(report, fmt.value, console)
    else:
        try:
            with output.open("w", encoding="utf-8") as f:
                render(report, fmt.value, Console(file=f, width=160, highlight=False))
        except OSError as e:
            stderr.print(f"{output}: cannot write the report: {e.strerror or e}", markup=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    raise typer.Exit(report.exit_code)


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
