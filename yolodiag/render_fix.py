"""Text for `yolodiag fix`: each fix tried, kept or put back (and why), and those left for
--unsafe. Reads the report's `fix` section; decides nothing."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from yolodiag.report import Report


def render_fix(report: Report, console: Console) -> None:
    fixed = report.sections["fix"]
    for outcome in fixed["outcomes"]:
        where = f" (layer {outcome['layer']})" if outcome["layer"] is not None else ""
        if outcome["applied"]:
            console.print(f"fixed {outcome['code']}{where}: {escape(outcome['title'])}")
        else:
            console.print(f"not fixed {outcome['code']}{where}: {escape(outcome['title'])}: "
                          f"{escape(outcome['why'])}")
    unsafe = [r for r in fixed["remaining"] if r["applicability"] == "unsafe"]
    if unsafe and not fixed["unsafe"]:
        console.print(f"{len(unsafe)} more with --unsafe: "
                      + "; ".join(f"{r['code']}: {escape(r['title'])}" for r in unsafe))
    if not fixed["outcomes"]:
        console.print("nothing to fix")
