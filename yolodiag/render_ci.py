"""CI formats: a Run as SARIF 2.1.0 (code scanning), JUnit XML (test reports) or GitHub Actions
workflow commands (annotations on the pull request), so that a pipeline shows each finding
where its reviewers look. The functions here are pure: they read a `yolodiag.report.Run` and
return text. They must not print, write files, change exit codes or decide what fails (the
report's `fail_on` and exit code do that), and importing this module must not import torch
(the checks are imported on the first call, to fill the registry; a Run that `commands` made
has imported them already). The only thing they add to the report is the registry's
documentation of each code.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

from yolodiag import __version__
from yolodiag.findings import (
    COMMAND_STAGES,
    INTERNAL_ERROR,
    REGISTRY,
    CheckInfo,
    Finding,
    Severity,
    refusing_codes,
)
from yolodiag.report import Report, Run, finite

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
INFORMATION_URI = "https://github.com/yolodiag/yolodiag"

_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
_GITHUB_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning",
                   Severity.INFO: "notice"}
_ORDER = [Severity.ERROR, Severity.WARNING, Severity.INFO]  # most severe first


def _registry() -> dict[str, CheckInfo]:
    """REGISTRY with every check registered (a Run from `commands` has imported them already)."""
    import yolodiag.checks  # noqa: F401  (registration)

    return REGISTRY


# SARIF ---------------------------------------------------------------------------------------


def to_sarif(run: Run) -> str:
    """The run as a SARIF 2.1.0 log: one rule per registered code, one result per finding."""
    registry = _registry()
    codes = sorted(registry)
    # A finding whose code is not registered still needs a rule for its ruleIndex.
    extra = {f.code: f for f in run.findings if f.code not in registry}
    rules = [_rule(registry[code]) for code in codes]
    rules += [_unregistered_rule(extra[code]) for code in sorted(extra)]
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    log = {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {"name": "yolodiag", "version": __version__,
                                "informationUri": INFORMATION_URI, "rules": rules}},
            "invocations": [{"executionSuccessful": run.exit_code in (0, 1)}],
            "results": [_result(f, index[f.code]) for f in run.findings],
        }],
    }
    return json.dumps(finite(log), indent=2, ensure_ascii=False, allow_nan=False)


def _rule(info: CheckInfo) -> dict[str, Any]:
    detects = info.section("What it detects")
    return {
        "id": info.code,
        "name": info.name,
        "shortDescription": {"text": info.summary or info.name},
        "fullDescription": {"text": detects or info.name},
        "help": {"text": info.section("Fix") or info.name},
        "defaultConfiguration": {"level": _SARIF_LEVEL[info.severity]},
    }


def _unregistered_rule(finding: Finding) -> dict[str, Any]:
    return {"id": finding.code, "name": finding.name,
            "shortDescription": {"text": finding.name},
            "defaultConfiguration": {"level": _SARIF_LEVEL[finding.severity]}}


def _result(finding: Finding, rule_index: int) -> dict[str, Any]:
    text = finding.message + (f" Fix: {finding.hint}" if finding.hint else "")
    result: dict[str, Any] = {
        "ruleId": finding.code,
        "ruleIndex": rule_index,
        "level": _SARIF_LEVEL[finding.severity],
        "message": {"text": text},
    }
    where = finding.location
    if where.file:
        physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(where.file)}}
        if where.line is not None and where.line >= 1:  # SARIF: startLine >= 1
            region = {"startLine": int(where.line)}
            if where.column is not None and where.column >= 1:
                region["startColumn"] = int(where.column)
            physical["region"] = region
        result["locations"] = [{"physicalLocation": physical}]
    properties = {key: value for key, value in (("layer", where.layer),
                                                ("section", where.section),
                                                ("data", finding.data)) if value or value == 0}
    if properties:
        result["properties"] = properties
    return result


def _uri(path: str) -> str:
    """A file path as a URI reference: relative paths stay relative (forward slashes,
    percent-encoded where a URI needs it); absolute paths become file:// URIs."""
    windows = PureWindowsPath(path)
    if windows.drive and windows.is_absolute():
        return windows.as_uri()
    posix = PurePosixPath(path.replace("\\", "/"))
    if posix.is_absolute():
        return posix.as_uri()
    return quote(posix.as_posix(), safe="/")


# JUnit ---------------------------------------------------------------------------------------


def to_junit(run: Run, codes: Iterable[str] | None = None) -> str:
    """The run as JUnit XML: one testsuite per report, one testcase per check code.

    The testcases are `codes` (default: the checks that ran for the report, or, for a report
    that does not say, every registered check of its command that runs without --select) plus
    every code with a finding in the report, so that no finding is dropped. Findings at or above
    the report's fail_on are a <failure> (refusals YD100-YD105 and YD001: an <error>); findings
    below it go to the testcase's <system-out>.
    """
    registry = _registry()
    root = ET.Element("testsuites", name="yolodiag")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for report in run.reports:
        stages = COMMAND_STAGES.get(report.command, frozenset())
        if codes is not None:
            ran = set(codes)
        elif report.checked is not None:
            ran = set(report.checked)
        else:
            ran = {code for code, info in registry.items()
                   if info.run is not None and not info.on_request and info.stage in stages}
        suite = _suite(report, ran, registry)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def _suite(report: Report, ran: set[str], registry: dict[str, CheckInfo]) -> ET.Element:
    by_code: dict[str, list[Finding]] = {}
    for finding in report.findings:
        by_code.setdefault(finding.code, []).append(finding)
    failing = _ORDER[: _ORDER.index(report.fail_on) + 1]
    path = report.path or (report.model.path if report.model else "<unknown>")
    suite = ET.Element("testsuite", name=f"{report.command}: {path}")
    counts = {"tests": 0, "failures": 0, "errors": 0}
    for code in sorted(ran | set(by_code)):
        findings = by_code.get(code, [])
        name = registry[code].name if code in registry else findings[0].name
        case = ET.SubElement(suite, "testcase", classname=f"yolodiag.{report.command}",
                             name=f"{code} {name}")
        counts["tests"] += 1
        if code in _error_codes():
            bad, quiet = findings, []
        else:
            bad = [f for f in findings if f.severity in failing]
            quiet = [f for f in findings if f.severity not in failing]
        if bad:
            tag = "error" if code in _error_codes() else "failure"
            counts["errors" if tag == "error" else "failures"] += 1
            message = f"{code} {name}: {bad[0].message}"
            if len(bad) > 1:
                message += f" (and {len(bad) - 1} more)"
            element = ET.SubElement(case, tag, message=message, type=code)
            element.text = "\n".join(_junit_line(f) for f in bad)
        if quiet:
            out = ET.SubElement(case, "system-out")
            out.text = "\n".join(f"{f.severity.value}: {_junit_line(f)}" for f in quiet)
    for key, value in counts.items():
        suite.set(key, str(value))
    return suite


def _junit_line(finding: Finding) -> str:
    """`file:line: layer N (section): message (fix: hint)`."""
    head = finding.location.prefix()
    text = f"{head}: {finding.message}" if head else finding.message
    return text + (f" (fix: {finding.hint})" if finding.hint else "")


# GitHub Actions ------------------------------------------------------------------------------


def to_github(run: Run) -> str:
    """One workflow command per finding (`::error file=...,line=...,title=...::message`), then
    one plain summary line."""
    lines = [_github_line(f) for f in run.findings]
    summary = run.summary
    models = len(run.reports)
    lines.append(
        f"yolodiag {run.command}: {summary['error']} errors, {summary['warning']} warnings, "
        f"{summary['info']} info in {models} model{'' if models == 1 else 's'}; "
        f"exit code {run.exit_code}")
    return "\n".join(lines) + "\n"


def _github_line(finding: Finding) -> str:
    where = finding.location
    properties = []
    if where.file:
        properties.append(f"file={_escape_property(where.file)}")
        if where.line is not None and where.line >= 1:
            properties.append(f"line={where.line}")
            if where.column is not None and where.column >= 1:
                properties.append(f"col={where.column}")
    properties.append(f"title={_escape_property(f'{finding.code} {finding.name}')}")
    message = finding.message + (f" (fix: {finding.hint})" if finding.hint else "")
    return (f"::{_GITHUB_COMMAND[finding.severity]} {','.join(properties)}"
            f"::{_escape_data(message)}")


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _error_codes() -> frozenset[str]:
    """Codes that say the input was refused or yolodiag crashed: a JUnit <error>, not a
    <failure>."""
    return refusing_codes() | {INTERNAL_ERROR}
