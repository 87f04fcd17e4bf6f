"""`yolodiag fix`: the findings' own fixes written into the model YAML (importing this module
registers the command). Thin like the others: parse, call yolodiag.fix.command, hand the work
to `_finish`; after the report it writes the fixed YAML where it is asked (`-o`, `--in-place`)
or prints the diff (`--diff`), and never writes over the input otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from yolodiag.cli.app import _finish, _write, app, stderr
from yolodiag.cli.options import (
    DebugOption,
    DialectOption,
    FailOn,
    FailOnOption,
    FormatOption,
    IgnoreOption,
    ModulesOption,
    NcOption,
    OutputFormat,
    RuleOption,
    ScaleOption,
    SelectOption,
    SizesOption,
    parse_dialect,
    parse_selection,
    parse_sizes,
    user_modules,
)
from yolodiag.report import Run


@app.command("fix")
def fix_command(
    *,
    model: Annotated[Path, typer.Argument(help="The model YAML to fix.", show_default=False)],
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", help="Write the fixed YAML here (the input's own path only with it "
                            "named, or --in-place).", show_default=False)] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Write the fixed YAML over the "
                                           "input.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Print a unified diff of the fixes and "
                                       "write nothing.")] = False,
    unsafe: Annotated[bool, typer.Option("--unsafe", help="Also apply fixes that change the "
                                         "architecture's meaning (a stride-2 stem).")] = False,
    img: SizesOption,
    select: SelectOption,
    ignore: IgnoreOption,
    fail_on: FailOnOption = FailOn.error,
    fmt: FormatOption = OutputFormat.text,
    debug: DebugOption = False,
    nc: NcOption = None,
    modules: ModulesOption,
    rule: RuleOption,
    dialect: DialectOption = "auto",
    scale: ScaleOption = None,
) -> None:
    """Apply the fixes the findings carry: each is applied, the YAML checked again, and kept
    only if it resolved its finding without a new error (safe fixes; unsafe ones, which change
    the architecture, with --unsafe). --select/--ignore choose the findings to fix.

    Only the rows concerned are rewritten: comments and formatting elsewhere stay as they
    are, and every `from` index a split row moves is renumbered. Exit codes as `check` on
    the fixed version.
    """
    from yolodiag.findings import Severity

    sizes = parse_sizes(img)
    selection = parse_selection(select, ignore)
    dialect = parse_dialect(dialect)
    if diff and (out is not None or in_place):
        raise typer.BadParameter("--diff writes nothing: not with -o or --in-place")
    target = model if in_place else out
    fixed = {}

    def run() -> Run:
        from yolodiag.fix.command import fix

        report, fixed["result"] = fix(model, unsafe=unsafe, selection=selection,
                                      fail_on=Severity(fail_on.value), sizes=tuple(sizes), nc=nc,
                                      modules=user_modules(modules, rule, model, dialect),
                                      dialect=dialect, scale=scale)
        return Run("fix", [report])

    def write(result: Run) -> None:
        report = result.reports[0]
        if diff:
            typer.echo(report.sections["fix"]["diff"], nl=False)
        elif target is not None and fixed["result"].changed:
            _write(target, "fixed YAML",
                   lambda: target.write_text(fixed["result"].text, encoding="utf-8"))
            stderr.print(f"wrote {target}", markup=False)
        elif fixed["result"].changed:
            stderr.print("not written: pass -o FILE, --in-place or --diff", markup=False)

    _finish(run, fmt, None, debug, after=write)
