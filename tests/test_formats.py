"""CI formats (render_ci): SARIF 2.1.0, JUnit XML and GitHub Actions workflow commands."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from yolodiag import __version__
from yolodiag.findings import Finding, Location, Severity
from yolodiag.render_ci import to_github, to_junit, to_sarif
from yolodiag.report import Report, Run

ERROR = Finding("YD301", "detect-stride-nonstandard", Severity.ERROR, "strides are 4/8/16",
                "make layer 0 a stride-2 stem", Location("models/m.yaml", 48, 24, "head"),
                {"strides": [4, 8, 16]})
WARNING = Finding("YD204", "tap-skips-block", Severity.WARNING, "layer 12 taps layer 6",
                  "tap layer 7", Location("models/m.yaml", 32, 12, "head"))
INFO = Finding("YD108", "depth-multiple-drops-repeats", Severity.INFO, "2 -> 1",
               location=Location("models/m.yaml", 17, 1, "backbone"))
NOWHERE = Finding("YD307", "compute-blowup", Severity.WARNING, "115.8 GFLOPs", "downsample")
NO_LINE = Finding("YD100", "yaml-unreadable", Severity.ERROR, "cannot read the file",
                  "check the path", Location("missing.yaml"))


def run_of(*findings: Finding, fail_on: Severity = Severity.ERROR, path: str = "models/m.yaml",
           command: str = "check") -> Run:
    return Run(command, [Report(command, findings=list(findings), fail_on=fail_on, path=path)])


# SARIF ---------------------------------------------------------------------------------------


def sarif_of(run: Run) -> dict:
    return json.loads(to_sarif(run))


def assert_sarif_required(log: dict) -> None:
    """The properties SARIF 2.1.0 requires, on every object that has them."""
    assert log["version"] == "2.1.0"
    assert isinstance(log["runs"], list) and log["runs"]
    for run in log["runs"]:
        driver = run["tool"]["driver"]
        assert isinstance(driver["name"], str) and driver["name"]
        for rule in driver.get("rules", []):
            assert isinstance(rule["id"], str) and rule["id"]
            for key in ("shortDescription", "fullDescription", "help"):
                if key in rule:
                    assert isinstance(rule[key]["text"], str) and rule[key]["text"]
        for result in run.get("results", []):
            message = result["message"]
            assert isinstance(message.get("text", message.get("id")), str)
            for location in result.get("locations", []):
                physical = location["physicalLocation"]
                assert isinstance(physical["artifactLocation"]["uri"], str)
                if "region" in physical:
                    start = physical["region"]["startLine"]
                    assert isinstance(start, int) and not isinstance(start, bool)
                    assert start >= 1


def test_sarif_envelope_and_required_properties():
    log = sarif_of(run_of(ERROR, WARNING, INFO, NOWHERE, NO_LINE))
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert_sarif_required(log)
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "yolodiag" and driver["version"] == __version__
    ids = [rule["id"] for rule in driver["rules"]]
    assert ids == sorted(ids) and "YD301" in ids and "YD103" in ids
    assert len(run["results"]) == 5
    assert run["invocations"] == [{"executionSuccessful": False}]  # YD100: exit code 2


def test_sarif_rules_carry_the_documentation():
    rules = {r["id"]: r for r in sarif_of(run_of())["runs"][0]["tool"]["driver"]["rules"]}
    rule = rules["YD301"]
    assert rule["name"] == "detect-stride-nonstandard"
    assert rule["shortDescription"]["text"].endswith(".")
    assert "\n" not in rule["shortDescription"]["text"]
    assert len(rule["fullDescription"]["text"]) > len(rule["shortDescription"]["text"])
    assert rule["help"]["text"]
    assert rule["defaultConfiguration"]["level"] == "warning"
    assert rules["YD303"]["defaultConfiguration"]["level"] == "error"
    assert rules["YD204"]["defaultConfiguration"]["level"] == "warning"
    assert rules["YD108"]["defaultConfiguration"]["level"] == "note"


def test_sarif_short_description_is_the_whole_first_sentence():
    rules = {r["id"]: r for r in sarif_of(run_of())["runs"][0]["tool"]["driver"]["rules"]}
    short = rules["YD108"]["shortDescription"]["text"]  # its first sentence contains "e.g. "
    assert "e.g. a ResNet-18" in short and short.endswith(".")
    assert rules["YD201"]["shortDescription"]["text"] == (
        "A layer that receives C channels but was constructed for C'.")


def test_sarif_levels_message_and_location():
    results = sarif_of(run_of(ERROR, WARNING, INFO))["runs"][0]["results"]
    assert [r["level"] for r in results] == ["error", "warning", "note"]
    first = results[0]
    assert first["message"]["text"] == "strides are 4/8/16 Fix: make layer 0 a stride-2 stem"
    assert results[2]["message"]["text"] == "2 -> 1"  # no hint, no " Fix:"
    assert first["locations"] == [{"physicalLocation": {
        "artifactLocation": {"uri": "models/m.yaml"}, "region": {"startLine": 48}}}]
    assert first["properties"] == {"layer": 24, "section": "head",
                                   "data": {"strides": [4, 8, 16]}}


def test_sarif_rule_index_points_at_the_rule():
    log = sarif_of(run_of(ERROR, WARNING, INFO, NOWHERE, NO_LINE))
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    for result in log["runs"][0]["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]


def test_sarif_unregistered_code_gets_a_rule():
    odd = Finding("YD999", "made-up", Severity.WARNING, "m")
    log = sarif_of(run_of(odd))
    assert_sarif_required(log)
    result = log["runs"][0]["results"][0]
    assert log["runs"][0]["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == "YD999"


def test_sarif_without_line_has_no_region_and_without_file_no_location():
    no_line, nowhere = sarif_of(run_of(NO_LINE, NOWHERE))["runs"][0]["results"]
    assert no_line["locations"] == [{"physicalLocation": {
        "artifactLocation": {"uri": "missing.yaml"}}}]
    assert "locations" not in nowhere
    assert "properties" not in nowhere


@pytest.mark.parametrize(("path", "uri"), [
    ("models\\m.yaml", "models/m.yaml"),
    ("my models/m.yaml", "my%20models/m.yaml"),
    ("/abs/m.yaml", "file:///abs/m.yaml"),
])
def test_sarif_uri_uses_forward_slashes(path, uri):
    finding = Finding("YD301", "detect-stride-nonstandard", Severity.ERROR, "m",
                      location=Location(path, 3))
    result = sarif_of(run_of(finding))["runs"][0]["results"][0]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == uri


def test_sarif_execution_successful_with_findings():
    log = sarif_of(run_of(ERROR))
    assert log["runs"][0]["invocations"] == [{"executionSuccessful": True}]  # exit code 1


# JUnit ---------------------------------------------------------------------------------------


def junit_of(run: Run, codes=None) -> ET.Element:
    text = to_junit(run, codes)
    assert text.startswith("<?xml ")
    return ET.fromstring(text.encode("utf-8"))


def case(root: ET.Element, code: str) -> ET.Element:
    (found,) = [c for c in root.iter("testcase") if c.get("name").split()[0] == code]
    return found


def assert_counts_consistent(root: ET.Element) -> None:
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for suite in root.findall("testsuite"):
        cases = suite.findall("testcase")
        counts = {"tests": len(cases),
                  "failures": sum(c.find("failure") is not None for c in cases),
                  "errors": sum(c.find("error") is not None for c in cases)}
        assert {key: int(suite.get(key)) for key in counts} == counts
        for key in totals:
            totals[key] += counts[key]
    assert {key: int(root.get(key)) for key in totals} == totals


def test_junit_structure_and_counts():
    root = junit_of(run_of(ERROR, WARNING, INFO, NOWHERE))
    assert root.tag == "testsuites" and root.get("name") == "yolodiag"
    assert_counts_consistent(root)
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "check: models/m.yaml"
    assert suite.get("failures") == "1" and suite.get("errors") == "0"
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) > 10  # the default set of checks
    assert all(c.get("classname") == "yolodiag.check" for c in cases)
    assert case(root, "YD301").get("name") == "YD301 detect-stride-nonstandard"
    failure = case(root, "YD301").find("failure")
    assert failure.get("type") == "YD301"
    assert failure.text == ("models/m.yaml:48: layer 24 (head): strides are 4/8/16 "
                            "(fix: make layer 0 a stride-2 stem)")
    assert case(root, "YD403").find("failure") is None  # a check with nothing to say passes


def test_junit_warning_fails_only_at_fail_on_warning():
    lenient = junit_of(run_of(WARNING))
    assert case(lenient, "YD204").find("failure") is None
    assert "layer 12 taps layer 6" in case(lenient, "YD204").find("system-out").text
    assert lenient.get("failures") == "0"

    strict = junit_of(run_of(WARNING, fail_on=Severity.WARNING))
    failure = case(strict, "YD204").find("failure")
    assert failure is not None and "layer 12 taps layer 6" in failure.text
    assert case(strict, "YD204").find("system-out") is None
    assert strict.get("failures") == "1"
    assert_counts_consistent(strict)


def test_junit_several_findings_of_one_code_share_one_failure():
    other = Finding("YD204", "tap-skips-block", Severity.WARNING, "layer 16 taps layer 4",
                    "tap layer 5", Location("models/m.yaml", 37, 16, "head"))
    root = junit_of(run_of(WARNING, other, fail_on=Severity.WARNING))
    (failure,) = case(root, "YD204").findall("failure")
    assert failure.text.splitlines() == [
        "models/m.yaml:32: layer 12 (head): layer 12 taps layer 6 (fix: tap layer 7)",
        "models/m.yaml:37: layer 16 (head): layer 16 taps layer 4 (fix: tap layer 5)"]
    assert root.get("failures") == "1"


def test_junit_refusal_is_an_error():
    refused = Finding("YD103", "unknown-module", Severity.ERROR, "no module `Cnov`",
                      "correct the spelling", Location("models/m.yaml", 9, 2, "backbone"))
    root = junit_of(run_of(refused))
    testcase = case(root, "YD103")
    assert testcase.find("failure") is None
    error = testcase.find("error")
    assert error is not None and error.get("type") == "YD103"
    assert "no module `Cnov`" in error.text
    assert root.get("errors") == "1" and root.get("failures") == "0"
    assert_counts_consistent(root)


def test_junit_codes_override_and_findings_are_never_dropped():
    root = junit_of(run_of(ERROR), codes=["YD204"])
    names = [c.get("name").split()[0] for c in root.iter("testcase")]
    assert names == ["YD204", "YD301"]
    assert_counts_consistent(root)


def test_junit_escapes_markup_and_one_suite_per_report():
    nasty = Finding("YD202", "build-failed", Severity.ERROR, 'Conv(3, "<&>") fails', "",
                    Location("a&b.yaml", 3, 0, "backbone"))
    run = Run("check", [Report("check", findings=[nasty], path="a&b.yaml"),
                        Report("check", findings=[WARNING], path="models/m.yaml")])
    root = junit_of(run)
    assert [s.get("name") for s in root.findall("testsuite")] == ["check: a&b.yaml",
                                                                  "check: models/m.yaml"]
    assert case(root.findall("testsuite")[0], "YD202").find("failure").text == (
        'a&b.yaml:3: layer 0 (backbone): Conv(3, "<&>") fails')
    assert_counts_consistent(root)


# GitHub Actions ------------------------------------------------------------------------------


def test_github_error_line_is_exact():
    lines = to_github(run_of(ERROR)).splitlines()
    assert lines[0] == ("::error file=models/m.yaml,line=48,title=YD301 detect-stride-nonstandard"
                        "::strides are 4/8/16 (fix: make layer 0 a stride-2 stem)")


def test_github_commands_per_severity_and_summary():
    lines = to_github(run_of(ERROR, WARNING, INFO)).splitlines()
    assert [line.split(" ", 1)[0] for line in lines[:3]] == ["::error", "::warning", "::notice"]
    assert lines[2].endswith("::2 -> 1")  # no hint, no "(fix: )"
    assert lines[3] == "yolodiag check: 1 errors, 1 warnings, 1 info in 1 model; exit code 1"
    assert len(lines) == 4


def test_github_escapes_data_and_properties():
    finding = Finding("YD202", "build-failed", Severity.ERROR, "100% wrong\nsecond line\r",
                      "a, b: c", Location("C:/my,models/m%.yaml", 7))
    (line, _) = to_github(run_of(finding)).splitlines()
    assert line == ("::error file=C%3A/my%2Cmodels/m%25.yaml,line=7,title=YD202 build-failed"
                    "::100%25 wrong%0Asecond line%0D (fix: a, b: c)")


def test_github_without_location():
    (line, summary) = to_github(run_of(NOWHERE)).splitlines()
    assert line == "::warning title=YD307 compute-blowup::115.8 GFLOPs (fix: downsample)"
    assert summary.endswith("exit code 0")


def test_github_file_without_line_and_several_models():
    run = Run("check", [Report("check", findings=[NO_LINE], path="missing.yaml"),
                        Report("check", findings=[], path="models/m.yaml")])
    (line, summary) = to_github(run).splitlines()
    assert line.startswith("::error file=missing.yaml,title=YD100 yaml-unreadable::")
    assert summary == "yolodiag check: 1 errors, 0 warnings, 0 info in 2 models; exit code 2"


# Through the real pipeline -------------------------------------------------------------------


def test_bundled_model_end_to_end():
    from yolodiag import commands

    run = Run("check", [commands.check(fail_on=Severity.WARNING)])
    log = json.loads(to_sarif(run))
    assert_sarif_required(log)
    assert any(r["ruleId"] == "YD301" for r in log["runs"][0]["results"])
    github = to_github(run).splitlines()
    assert any(line.startswith("::warning file=") and "title=YD301" in line for line in github)
    root = ET.fromstring(to_junit(run).encode("utf-8"))
    assert case(root, "YD301").find("failure") is not None
    assert_counts_consistent(root)


def test_importing_render_ci_does_not_import_torch():
    code = "import sys, yolodiag.render_ci; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
