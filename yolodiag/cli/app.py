"""The `yolodiag` command line's frame: the Typer app, --version, and the one exit path.

`_finish` runs a command's work, renders its reports and exits with its code; every error
becomes one stderr line naming file, line and layer (a traceback only with --debug). Exit codes
(also in report.py): 0 nothing at or above --fail-on, 1 findings at or above it, 2 bad input or
usage, 3 internal error. Results go to stdout (or --output), errors and progress to `stderr`.
The commands themselves are in commands.py and their shared options in options.py; nothing here
imports torch, so `yolodiag --help` is instant.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from yolodiag.findings import Refused, Unsupported
from yolodiag.report import EXIT_BAD_INPUT, EXIT_INTERNAL, Run

if TYPE_CHECKING:
    from yolodiag.cli.options import OutputFormat

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Find why an edited YOLO model will train to zero precision and recall, before "
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
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Commands: check, fix, gradflow, overfit, weights, run, explain, rules."""


def _finish(run: Callable[[], Run], fmt: OutputFormat, output: Path | None,
            debug: bool, after: Callable[[Run], None] | None = None) -> None:
    """Run a command, render its reports, exit with its code; errors become one stderr line.
    `after` writes what a command writes besides the report (gradflow's plot)."""
    try:
        # A user's module that prints while it is built must not corrupt a JSON or SARIF
        # report on stdout: whatever the work prints is progress, and goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            result = run()
    except (Refused, Unsupported) as e:
        if debug:
            traceback.print_exc()
        stderr.print(e.finding.one_line() if isinstance(e, Refused) else f"yolodiag: {e}",
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


def _write(path: Path, what: str, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as e:
        stderr.print(f"{path}: cannot write the {what}: {e.strerror or e}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


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
