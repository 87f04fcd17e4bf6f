"""The check engine and every code: one bad and one good example per code (tests/examples),
the seed's findings, silence on the stock models, selection, fail-on, explain and rules."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import shared, write_yaml
from mutants import MUTANTS
from yolodiag import commands
from yolodiag.checks import REGISTRY, Facts, Selection, run_checks
from yolodiag.cli import app
from yolodiag.findings import (
    DOC_SECTIONS,
    INTERNAL_ERROR,
    Problem,
    Severity,
    Stage,
    check,
    required_sections,
)

EXAMPLES = Path(__file__).parent / "examples"
EXAMPLE_CODES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir() and
                       p.name.startswith("YD"))  # dataset-good: the --data examples' good data
runner = CliRunner()


def check_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["check", *args, "-f", "json"])
    return result.exit_code, json.loads(result.stdout)


def codes_of(report: dict) -> list[str]:
    return [f["code"] for f in report["findings"]]


def example_options(path: Path) -> list[str]:
    """Options an example asks for on its first line: `# yolodiag check --img 300`."""
    first = path.read_text().splitlines()[0]
    return shlex.split(first.removeprefix("# yolodiag check")) if first.startswith(
        "# yolodiag check") else []


def checkpoint_example(path: Path, first: str) -> str:
    """An example's first line with its placeholders filled: {shared} (the golden files),
    {here} (the example's folder), {crafted} (a checkpoint calling os.system), {own} (a
    YOLOv5-layout checkpoint of the example's own model), {nan} (the same with a NaN),
    {truncated} (the first half of its bytes), {yolov7-epoch} (a YOLOv7 per-epoch checkpoint
    of yolov7-tiny at nc=3, optimizer state included)."""
    import tempfile

    import yaml as pyyaml

    from checkpoints import crafted, yolov5_layout, yolov7_tiny_per_epoch
    from yolodiag.build.builder import build
    from yolodiag.spec import load_spec

    folder = Path(tempfile.mkdtemp())
    if "{shared}" in first:
        first = first.replace("{shared}", str(shared("golden").parent))
    if "{crafted}" in first:
        first = first.replace("{crafted}", str(crafted(folder / "crafted.pt",
                                                       folder / "ran")))
    if "{yolov7-epoch}" in first:
        first = first.replace("{yolov7-epoch}", str(yolov7_tiny_per_epoch(folder / "epoch.pt")))
    for key in ("{own}", "{nan}", "{truncated}"):
        if key in first:
            built = build(load_spec(path), device="cpu")
            if key == "{nan}":
                with torch.no_grad():
                    next(built.model.parameters())[0] = float("nan")
            text = path.read_text().split("\n", 2)[2]
            own = yolov5_layout(built.model, pyyaml.safe_load(text), folder / "own.pt")
            if key == "{truncated}":  # an interrupted save: the first half of the bytes
                own.write_bytes(own.read_bytes()[: own.stat().st_size // 2])
            first = first.replace(key, str(own))
    return first.replace("{here}", str(path.parent))


@contextlib.contextmanager
def working_directory(folder: Path):
    """Run from the example's folder: it plays the YOLOv5 root (where train.py runs), which a
    data YAML's relative `path:` is resolved against, as v7.0 resolves it."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def run_example(path: Path, command: str = "check") -> tuple[int, list[str]]:
    """The codes `yolodiag check` (or gradflow, overfit) reports for an example. Gradient and
    fit examples use the broken blocks of tests/mutants.py, registered as `--modules` will
    register a user's; an overfit example's first line gives its options."""
    if command == "gradflow":
        report = commands.gradflow(path, modules=MUTANTS)
    elif command == "overfit":
        report = overfit_example(path)
    elif command in ("weights", "run"):
        words = shlex.split(checkpoint_example(path, path.read_text().splitlines()[0]))[3:]
        report = checkpoint_command(path, command, words)
    else:  # --modules and --data files are named relative to their example
        options = [str(path.parent / o) if o.endswith((".py", ".yaml")) else o
                   for o in example_options(path)]
        with working_directory(path.parent):
            code, report = check_json(str(path), *options)
        return code, codes_of(report)
    return report.exit_code, [f.code for f in report.findings]


def overfit_example(path: Path):
    """`# yolodiag overfit --steps 60 --img 128 [--amp]` on the first line. --amp is float16
    here as on CUDA (the CPU's own --amp is bfloat16, which does not overflow): the CUDA path,
    run on the CPU."""
    import yolodiag.overfit

    words = shlex.split(path.read_text().splitlines()[0].removeprefix("# yolodiag overfit"))
    options = dict(zip(words[::2], words[1::2])) if "--amp" not in words else dict(
        zip(*[iter([w for w in words if w != "--amp"])] * 2))
    img = int(options.get("--img", 256))
    original = yolodiag.overfit.autocast_dtype
    yolodiag.overfit.autocast_dtype = lambda device: torch.float16
    try:
        return commands.overfit(path, (img, img), steps=int(options.get("--steps", 300)),
                                amp="--amp" in words, modules=MUTANTS)
    finally:
        yolodiag.overfit.autocast_dtype = original


def checkpoint_command(path: Path, command: str, words: list[str]):
    if command == "run":
        return commands.run(words[0])
    options = dict(zip(words[::2], words[1::2]))
    return commands.weights(path, options["--weights"], cfg_given="--no-cfg" not in words,
                            nc=int(options["--nc"]) if "--nc" in options else None)


def example_command(code: str) -> str:
    return {Stage.GRAD: "gradflow", Stage.FIT: "overfit", Stage.CKPT: "weights",
            Stage.RUN: "run"}.get(REGISTRY[code].stage, "check")


def test_every_code_except_internal_error_has_a_bad_and_a_good_example():
    assert EXAMPLE_CODES == sorted(set(REGISTRY) - {INTERNAL_ERROR})


@pytest.mark.parametrize("code", EXAMPLE_CODES)
def test_bad_example_raises_the_code_and_good_example_does_not(code):
    bad = EXAMPLES / code / "bad.yaml"
    good = EXAMPLES / code / "good.yaml"
    command = example_command(code)
    _, found = run_example(bad, command)
    assert code in found, f"{bad} should raise {code}, got {found}"
    _, found = run_example(good if good.exists() else EXAMPLES / "base.yaml", command)
    assert code not in found, f"the good example of {code} raises it: {found}"


def _uncommented(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line).strip()


@pytest.mark.parametrize("code", EXAMPLE_CODES)
def test_documented_example_is_the_tested_bad_example(code):
    """`explain` shows lines of the very YAML (or command) the bad-example test runs."""
    bad = EXAMPLES / code / "bad.yaml"
    rows = [_uncommented(line) for line in bad.read_text().splitlines()]
    example = REGISTRY[code].section("Example")
    assert example
    for line in filter(None, map(_uncommented, example.splitlines())):
        if line.startswith("yolodiag check"):
            words = shlex.split(line)[2:]
            options = [t for i, t in enumerate(words)  # the model's path is not an option
                       if not t.endswith(".yaml") or (i and words[i - 1].startswith("--"))]
            assert options == example_options(bad)
        elif line.startswith("yolodiag "):  # another command: the one the example runs
            assert line.split()[1] == example_command(code), line
        else:
            assert any(line in row for row in rows), f"{line!r} is not in {bad}"


def test_every_code_documents_what_why_example_and_fix():
    for info in REGISTRY.values():
        for title in required_sections(info.severity):
            assert info.section(title), f"{info.code} lacks {title}"


def test_every_error_code_says_which_measured_consequence_makes_it_an_error():
    errors = [info for info in REGISTRY.values() if info.severity is Severity.ERROR]
    assert len(errors) > 20
    for info in errors:
        assert len(info.section("Why it is an error").split()) >= 8, info.code
    assert "Why it is an error" in DOC_SECTIONS


def test_stride_findings_are_warnings_with_their_measured_evidence():
    doc = REGISTRY["YD301"].section("Why it is a warning")
    assert REGISTRY["YD301"].severity is Severity.WARNING
    assert REGISTRY["YD205"].severity is Severity.WARNING
    assert "0, 90 and 306" in doc and "step 250" in doc and "4.4x" in doc


def test_bundled_seed_model_exits_0_with_warnings_naming_stem_taps_cost_and_depth():
    exit_code, report = check_json()
    assert exit_code == 0 and report["summary"]["error"] == 0
    by_code = {}
    for f in report["findings"]:
        by_code.setdefault(f["code"], []).append(f)
    stride = by_code["YD301"][0]
    assert stride["severity"] == "warning"
    assert stride["data"]["strides"] == [4, 8, 16] and stride["data"]["designed_for"] == [8, 16, 32]
    # YOLOv5's bias init: about 8 objects per 640 image per level, over (640 / s)^2 cells
    assert stride["data"]["objectness_priors"] == pytest.approx(
        [8 / (160 ** 2 + 8), 8 / (80 ** 2 + 8), 8 / (40 ** 2 + 8)])
    assert "layer 0 Conv is a stride-1 stem" in stride["message"]
    assert "the stride 4 objectness alone starts below val.py's conf 0.001" in stride["message"]
    taps = {(f["data"]["tapped"], f["data"]["refined_by"]) for f in by_code["YD204"]}
    assert taps == {(4, 5), (6, 7)}
    cost = by_code["YD307"][0]
    assert cost["data"]["gflops"] == pytest.approx(115.8, abs=0.05)
    assert cost["data"]["layers"][0] == 1 and "layer 1 BasicBlock at full resolution" in \
        cost["message"]
    depth = by_code["YD108"][0]
    assert depth["severity"] == "info" and "layer 1 BasicBlock 2 -> 1" in depth["message"]


def test_stock_models_and_the_fixed_resnet18_have_no_warning_or_error():
    stock = sorted(shared("yamls", "stock").glob("*.yaml"))
    fixed = shared("yamls", "resnet18", "yolov5s-resnet18-fixed.yaml")
    assert len(stock) == 28
    exit_code, run = check_json(*map(str, stock), str(fixed), "--fail-on", "warning")
    serious = [(r["model"]["path"], f["code"]) for r in run["reports"] for f in r["findings"]
               if f["severity"] != "info"]
    assert serious == [] and exit_code == 0
    assert len(run["reports"]) == 29 and run["summary"]["warning"] == 0


def test_yolov5s_with_a_strided_basicblock_reports_ignored_stride_and_strides(tmp_path):
    text = shared("yamls", "stock", "yolov5s.yaml").read_text()
    stock_row = "[-1, 1, Conv, [128, 3, 2]],"  # layer 1 (P2/4); the row has a comment in
    assert text.count(stock_row) == 1  # ../shared, none in the tests' copy
    path = write_yaml(tmp_path, text.replace(stock_row, "[-1, 1, BasicBlock, [128, 2]],"))
    exit_code, report = check_json(str(path))
    found = codes_of(report)
    assert "YD205" in found and "YD301" in found and exit_code == 0
    assert check_json(str(path), "--fail-on", "warning")[0] == 1
    ignored = next(f for f in report["findings"] if f["code"] == "YD205")
    assert ignored["location"]["layer"] == 1


def test_select_and_ignore_by_prefix():
    _, report = check_json("--select", "YD3")
    assert set(codes_of(report)) == {"YD301", "YD307", "YD308"}  # a prefix enables YD308 too
    _, report = check_json("--select", "YD3", "--ignore", "YD30")
    assert codes_of(report) == []
    _, report = check_json("--ignore", "YD2,YD1")
    assert not any(c.startswith(("YD1", "YD2")) for c in codes_of(report))


def test_on_request_summary_only_when_selected():
    _, report = check_json()
    assert "YD308" not in codes_of(report)
    _, report = check_json("--select", "YD308")
    assert codes_of(report) == ["YD308"]
    assert "25 layers, 10,922,013 parameters" in report["findings"][0]["message"]


def test_unknown_prefix_is_a_usage_error():
    result = runner.invoke(app, ["check", "--select", "YD9"])
    assert result.exit_code == 2 and "matches no code" in result.output


@pytest.mark.parametrize(("fail_on", "expected"), [("error", 0), ("warning", 1), ("info", 1)])
def test_fail_on_sets_the_threshold(fail_on, expected):
    path = EXAMPLES / "YD402" / "bad.yaml"  # one warning, nothing else
    exit_code, report = check_json(str(path), "--fail-on", fail_on)
    assert report["summary"] == {"error": 0, "warning": 1, "info": 0}
    assert exit_code == expected == report["exit_code"]


def test_a_crashing_check_becomes_an_internal_error_finding_and_exit_3(monkeypatch):
    info = REGISTRY["YD203"]

    def broken(facts):
        yield from ()
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(REGISTRY, "YD203", type(info)(**{**info.__dict__, "run": broken}))
    result = runner.invoke(app, ["check", "-f", "json"])
    report = json.loads(result.stdout)
    internal = [f for f in report["findings"] if f["code"] == INTERNAL_ERROR]
    assert len(internal) == 1 and internal[0]["data"]["check"] == "YD203"
    assert "ZeroDivisionError: boom" in internal[0]["message"]
    assert "YD301" in codes_of(report)  # the other checks still ran
    assert result.exit_code == 3
    assert "YD001 internal-error: check YD203" in result.stderr
    assert "Traceback" not in result.stderr
    debug = runner.invoke(app, ["check", "--debug"])
    assert "Traceback" in debug.stderr and "ZeroDivisionError: boom" in debug.stderr


def test_runner_skips_checks_whose_stage_did_not_run():
    calls = []

    @check("YD999", "test-only", REGISTRY["YD301"].severity, Stage.TRACE)
    def needs_trace(facts):
        """What it detects:\n x\nWhy it zeroes P and R:\n x\nExample:\n x\nFix:\n x"""
        calls.append(facts)
        yield Problem("seen")

    try:
        assert run_checks(Facts("m.yaml"), Selection(("YD999",))) == []
        assert calls == []
    finally:
        del REGISTRY["YD999"]


def test_several_models_one_summary_and_the_worst_exit_code(tmp_path):
    good = EXAMPLES / "base.yaml"
    refused = EXAMPLES / "YD103" / "bad.yaml"
    result = runner.invoke(app, ["check", str(good), str(refused), "-f", "json"])
    run = json.loads(result.stdout)
    jsonschema = pytest.importorskip("jsonschema")
    schema = Path(__file__).parents[1] / "yolodiag" / "schemas" / "report.schema.json"
    jsonschema.validate(run, json.loads(schema.read_text()), cls=jsonschema.Draft202012Validator)
    assert [r["exit_code"] for r in run["reports"]] == [0, 2]
    assert run["exit_code"] == result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "YD103 unknown-module" in result.stderr


def test_explain_prints_the_registered_documentation():
    result = runner.invoke(app, ["explain", "yd301"])
    assert result.exit_code == 0
    for title in (*required_sections(Severity.WARNING), "Why it is a warning"):
        assert f"{title}:" in result.stdout
    head = "YD301 detect-stride-nonstandard (default severity warning, stage trace)"
    assert head in result.stdout
    assert runner.invoke(app, ["explain", "YD999"]).exit_code == 2


def test_rules_lists_every_code_with_name_and_severity():
    result = runner.invoke(app, ["rules"], terminal_width=200)
    assert result.exit_code == 0
    for info in REGISTRY.values():
        assert re.search(rf"{info.code}\s+{info.name}\s+{info.severity.value}", result.stdout)


def test_non_positive_anchors_are_an_error_no_target_can_match(tmp_path):
    base = (EXAMPLES / "base.yaml").read_text()
    path = write_yaml(tmp_path, base.replace("[30,61, 62,45, 59,119]", "[-30,61, 62,45, 59,119]"))
    exit_code, report = check_json(str(path))
    anchors = [f for f in report["findings"] if f["code"].startswith("YD4")]
    assert [(f["code"], f["severity"]) for f in anchors] == [("YD403", "error")]
    assert exit_code == 1


def test_assignment_of_the_synthetic_batch_is_reported_for_seed_and_yolov5s():
    _, seed = check_json()
    _, stock = check_json(str(shared("yamls", "stock", "yolov5s.yaml")))
    for report in (seed, stock):
        assignment = report["assignment"]
        assert assignment["images"] == 16 and assignment["targets"] > 30
        assert len(assignment["positives_per_level"]) == 3
        assert min(assignment["positives_per_level"]) > 0 and assignment["unmatched"] == 0
    assert seed["assignment"]["strides"] == [4, 8, 16]
    assert stock["assignment"]["strides"] == [8, 16, 32]


def test_yolov5s_with_anchors_in_grid_units_gets_no_target_matched(tmp_path):
    text = shared("yamls", "stock", "yolov5s.yaml").read_text()
    grid_units = {"[10,13, 16,30, 33,23]": "[1.25,1.625, 2,3.75, 4.125,2.875]",
                  "[30,61, 62,45, 59,119]": "[1.875,3.8125, 3.875,2.8125, 3.6875,7.4375]",
                  "[116,90, 156,198, 373,326]": "[3.625,2.8125, 4.875,6.1875, 11.65625,10.1875]"}
    for pixels, cells in grid_units.items():
        assert pixels in text
        text = text.replace(pixels, cells)
    exit_code, report = check_json(str(write_yaml(tmp_path, text)))
    unmatched = next(f for f in report["findings"] if f["code"] == "YD404")
    assert unmatched["severity"] == "error" and exit_code == 1
    assert 0.5 < unmatched["data"]["unmatched_fraction"] <= 1
    assert f"{unmatched['data']['unmatched']} of {unmatched['data']['targets']}" in \
        unmatched["message"]


def test_a_crashing_assignment_is_an_internal_error_not_a_lost_report(monkeypatch):
    import yolodiag.analyses.assignment as assignment

    def broken(facts):
        raise RuntimeError("assignment bug")

    monkeypatch.setattr(assignment, "target_assignment", broken)
    result = runner.invoke(app, ["check", "-f", "json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 3 and report["assignment"] is None
    internal = [f for f in report["findings"] if f["code"] == INTERNAL_ERROR]
    assert [f["data"]["check"] for f in internal] == ["YD404"]
    assert "YD301" in codes_of(report)
