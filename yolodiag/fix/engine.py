"""The fix loop, as ruff's: check the YAML, take the first finding whose fix is allowed (safe,
or unsafe with --unsafe, and selected), apply its edits to the text, check the result; keep it
only when the finding's code is found fewer times and no error appears that was not there
before, else put the text back and remember why. Repeat until no allowed fix is left (at most
MAX_ROUNDS). The candidate text is checked in a temporary folder under the input's own file
name (a family's scale letter is in it); the user's files are not touched here.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolodiag.findings import Finding, Severity

MAX_ROUNDS = 20


@dataclass
class Outcome:
    """One fix tried: what it was for and whether it stayed."""

    code: str
    layer: int | None
    title: str
    applied: bool
    why: str = ""  # why it was put back

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "layer": self.layer, "title": self.title,
                "applied": self.applied, "why": self.why}


@dataclass
class Fixed:
    """The loop's result: the final text, the fixes tried in order, the final check."""

    original: str
    text: str
    outcomes: list[Outcome] = field(default_factory=list)
    report: Any = None  # the check Report of `text`

    @property
    def changed(self) -> bool:
        return self.text != self.original


def fix_text(path: Path, check, *, unsafe: bool = False, selected=lambda f: True,
             source: Path | None = None) -> Fixed:
    """Fix the YAML at `path`; `check(path) -> Report` checks a version of it (the command's
    options bound). `selected(finding)`: the --select/--ignore filter. `source`: the file
    holding its text where `path` is a name the family resolves (yolo11n.yaml: yolo11.yaml)."""
    original = (source or path).read_text(encoding="utf-8")
    result = Fixed(original, original, report=check(path))
    tried: set[tuple[str, int | None, str]] = set()
    with tempfile.TemporaryDirectory(prefix="yolodiag-fix-") as folder:
        candidate_path = Path(folder) / path.name
        for _ in range(MAX_ROUNDS):
            finding = next((f for f in result.report.findings if f.fix is not None
                            and (f.fix.applicability == "safe" or unsafe) and selected(f)
                            and _key(f) not in tried), None)
            if finding is None:
                break
            tried.add(_key(finding))
            candidate, why = _applied(result.text, finding)
            report = None
            if candidate is not None:
                candidate_path.write_text(candidate, encoding="utf-8")
                report = check(candidate_path)
                why = _worse(result.report.findings, report.findings, finding.code)
            outcome = Outcome(finding.code, finding.location.layer, finding.fix.title, not why,
                              why)
            result.outcomes.append(outcome)
            if outcome.applied:
                result.text, result.report = candidate, _relocated(report, path)
    return result


def _key(finding: Finding) -> tuple[str, int | None, str]:
    return finding.code, finding.location.layer, finding.fix.title


def _applied(text: str, finding: Finding) -> tuple[str | None, str]:
    """The text with the finding's edits, and why not where they cannot be written."""
    import yaml

    from yolodiag.fix.edits import apply
    from yolodiag.fix.text import SECTIONS, edit

    data = yaml.safe_load(text)
    rows, keys = apply(data, finding.fix.edits)
    candidate = edit(text, rows, keys)
    expected = {**data, **keys}
    for section in SECTIONS:
        if section in data:
            expected[section] = [r.value for r in rows if r.section == section]
    if yaml.safe_load(candidate) != expected:
        return None, "the edited text does not read back as the edited rows"
    return candidate, ""


def _worse(before: list[Finding], after: list[Finding], code: str) -> str:
    """Why the fixed version is not kept: the code still found as often, or a new error."""
    old_errors = {f.code for f in before if f.severity is Severity.ERROR}
    new = sorted({f.code for f in after if f.severity is Severity.ERROR} - old_errors)
    if new:
        return f"it would raise {', '.join(new)}"
    if sum(f.code == code for f in after) >= sum(f.code == code for f in before):
        return f"{code} is still found"
    return ""


def _relocated(report, path: Path):
    """The candidate's report with its findings located in the user's file."""
    findings = [dataclasses.replace(f, location=dataclasses.replace(f.location, file=str(path)))
                if f.location.file else f for f in report.findings]
    return dataclasses.replace(report, findings=findings, path=str(path))
