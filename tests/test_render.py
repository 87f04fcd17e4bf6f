"""Renderers format what the report holds, literally."""

from __future__ import annotations

import io
import json

from rich.console import Console

from yolodiag.findings import Finding, Location, Severity
from yolodiag.render import render
from yolodiag.report import Report, Run
from yolodiag.shapes import format_shape


def text_of(report: Report) -> str:
    out = io.StringIO()
    render(Run("check", [report]), "text", Console(file=out, width=120))
    return out.getvalue()


def test_finding_text_with_brackets_is_printed_verbatim():
    finding = Finding("YD202", "build-failed", Severity.ERROR, "Conv(3, [64, 1, 1]) [bold]x[/]",
                      "fix [this]", Location("m.yaml", 7, 3, "backbone"))
    text = text_of(Report("check", findings=[finding]))
    assert "Conv(3, [64, 1, 1]) [bold]x[/]" in text
    assert "fix: fix [this]" in text and "at m.yaml:7: layer 3 (backbone)" in text
    assert "1 errors, 0 warnings, 0 info; exit code 1" in text


def test_json_carries_findings_summary_and_exit_code():
    finding = Finding("YD301", "detect-stride-nonstandard", Severity.WARNING, "m", "h")
    out = io.StringIO()
    render(Run("check", [Report("check", findings=[finding])]), "json", Console(file=out))
    report = json.loads(out.getvalue())
    assert report["summary"] == {"error": 0, "warning": 1, "info": 0}
    assert report["exit_code"] == 0  # warnings do not fail by default
    assert report["findings"][0]["location"] == {"file": None, "line": None, "layer": None,
                                                 "section": None}


def test_shapes_drop_the_batch_dimension():
    assert format_shape([1, 32, 320, 320]) == "32x320x320"
    assert format_shape([[1, 100, 85], [[1, 3, 8, 8, 85]]]) == "2 outputs"
    assert format_shape(None) == "-"


def test_json_is_strict_an_infinite_value_becomes_null():
    finding = Finding("YD306", "receptive-field-small", Severity.WARNING, "m", "h",
                      data={"receptive_field": float("inf"), "ok": 1.5})
    out = io.StringIO()
    render(Run("check", [Report("check", findings=[finding])]), "json", Console(file=out))

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    report = json.loads(out.getvalue(), parse_constant=refuse)
    assert report["findings"][0]["data"] == {"receptive_field": None, "ok": 1.5}
