"""`yolodiag fix` as a function: inputs in, a Report out (the final version's check, with a
`fix` section: what was applied, what was put back and why, the text before and after). The
CLI writes the text where it is asked to; nothing here writes the user's files.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from yolodiag.findings import Severity
from yolodiag.fix.engine import Fixed, fix_text
from yolodiag.report import Report


def fix(model: str | Path, *, unsafe: bool = False, selection=None,
        fail_on: Severity = Severity.ERROR, **check_options) -> tuple[Report, Fixed]:
    """Apply the findings' fixes to `model` (safe ones; unsafe ones too with `unsafe`) that
    `selection` includes, checking after each (`check_options`: what `commands.check` takes).
    Returns the final version's report (command "fix") and the loop's result."""
    from yolodiag import commands
    from yolodiag.checks import REGISTRY, Selection

    selection = selection or Selection()
    path = Path(model)

    def check(candidate: Path) -> Report:
        return commands.check(candidate, fail_on=fail_on, **check_options)

    fixed = fix_text(path, check, unsafe=unsafe, source=source_file(path),
                     selected=lambda finding: selection.includes(REGISTRY[finding.code]))
    report = dataclasses.replace(fixed.report, command="fix", sections={
        **fixed.report.sections,
        "fix": {"changed": fixed.changed, "unsafe": unsafe,
                "outcomes": [o.as_dict() for o in fixed.outcomes],
                "remaining": [{"code": f.code, "layer": f.location.layer,
                               "title": f.fix.title, "applicability": f.fix.applicability}
                              for f in fixed.report.findings if f.fix is not None],
                "diff": diff(fixed, str(path))}})
    return report, fixed


def source_file(path: Path) -> Path:
    """The file whose text is fixed: `path`, or the file a family's code reads for that name
    (a scale letter in it: yolo11n.yaml is yolo11.yaml at scale n). Unsupported for neither."""
    from yolodiag.dialects import located_file
    from yolodiag.findings import Unsupported

    if path.is_file():
        return path
    found = located_file(path)
    if found is None:
        raise Unsupported(f"{path}: no such file (fix needs the YAML itself)")
    return found


def diff(fixed: Fixed, name: str) -> str:
    """The unified diff from the input to the fixed text."""
    return "".join(difflib.unified_diff(fixed.original.splitlines(True),
                                        fixed.text.splitlines(True), name, name))
