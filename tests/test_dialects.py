"""The dialect seam: a family is one registered value, and the shared engine asks it.

A toy second dialect (tests/toy_dialect.py: two blocks, its own rules, an anchor-free head) is
registered from here and checked end to end with no edit of shared code; the shared code is
scanned for module names of any registered dialect; the default dialect says why it was
chosen.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest
from toy_dialect import TOY, TOY_YAML
from typer.testing import CliRunner

from conftest import ROOT, validate
from yolodiag.cli import app
from yolodiag.dialects import AUTO, DEFAULT, DIALECTS, choose, register, unregister
from yolodiag.findings import REGISTRY, Refused, refusing_codes

runner = CliRunner()


@pytest.fixture
def toy(tmp_path):
    register(TOY)
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_YAML)
    try:
        yield path
    finally:
        unregister(TOY.name)


def check_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["check", *args, "-f", "json"])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    validate(report)
    return result.exit_code, report


def test_a_toy_dialect_registered_from_the_tests_is_checked_end_to_end(toy):
    code, report = check_json(str(toy))
    assert report["model"]["dialect"] == {"name": "toy", "title": "Toy v0",
                                          "reason": "its head is ToyHead"}
    assert report["dialect"] == report["model"]["dialect"]
    assert [row["module"] for row in report["model"]["layers"]] == ["ToyConv"] * 4 + ["ToyHead"]
    assert report["model"]["layers"][4]["args"] == [3, [64, 128]]  # the toy's own head rule
    assert report["model"]["detect"] == {"layer": 4, "strides": [8, 16], "anchors_grid": None}
    assert code == 0 and report["findings"] == []


def test_checks_that_need_anchors_are_skipped_for_an_anchor_free_dialect(toy):
    from yolodiag import commands

    anchored = {code for code, info in REGISTRY.items() if "anchors" in info.needs}
    assert {"YD301", "YD401", "YD402", "YD403", "YD404", "YD405"} <= anchored
    toy_ran, seed_ran = set(commands.check(toy).checked), set(commands.check().checked)
    assert anchored & seed_ran == anchored - {"YD405"}  # YD405 runs with --data only
    assert not anchored & toy_ran
    assert {"YD201", "YD302", "YD303", "YD304"} <= toy_ran  # the shared checks still run


def test_messages_name_the_dialect_of_the_yaml(toy):
    toy.write_text(TOY_YAML.replace("[-1, 1, ToyConv, [16, 2]]", "[-1, 1, ToyConv, [16, 2 + 0]]"))
    result = runner.invoke(app, ["check", str(toy)])
    assert result.exit_code == 2
    assert "YD105" in result.stderr and "Toy would evaluate" in result.stderr


def test_text_report_says_in_one_line_which_dialect_and_why(toy):
    result = runner.invoke(app, ["check", str(toy)])
    assert "read as Toy v0: its head is ToyHead" in result.stdout
    seed = runner.invoke(app, ["check"]).stdout
    assert [line for line in seed.splitlines() if line.startswith("read as ")] == [
        "read as YOLOv5 v7.0: its keys and module names are YOLOv5 v7.0's"]


def test_dialect_option_forces_the_reading(toy):
    result = runner.invoke(app, ["check", "--dialect", "toy"])  # the bundled YOLOv5 YAML
    assert result.exit_code == 2 and "YD103" in result.stderr and "Conv" in result.stderr
    _, report = check_json(str(toy), "--dialect", "toy")
    assert report["model"]["dialect"]["reason"] == "--dialect toy"


def test_an_unknown_dialect_is_a_usage_error():
    result = runner.invoke(app, ["check", "--dialect", "yolov99"])
    assert result.exit_code == 2 and "yolov99" in result.output


def test_training_commands_refuse_a_dialect_without_a_loss_in_one_line(toy):
    result = runner.invoke(app, ["gradflow", str(toy)])
    assert result.exit_code == 2
    assert "Toy has none yet" in result.stderr and "Traceback" not in result.output


def test_stock_yaml_is_claimed_by_yolov5_and_others_get_the_default_reading():
    stock = {"nc": 80, "depth_multiple": 1.0, "width_multiple": 1.0, "anchors": 3,
             "backbone": [[-1, 1, "Conv", [64, 6, 2, 2]]], "head": [[-1, 1, "Detect", []]]}
    assert choose(stock).dialect.name == "yolov5"
    assert choose(stock).reason == "its keys and module names are YOLOv5 v7.0's"
    custom = {**stock, "backbone": [[-1, 1, "MyBlock", [64]]]}
    unclaimed = choose(custom)
    assert unclaimed.dialect.name == DEFAULT
    assert unclaimed.reason.startswith("no dialect claims it")
    assert choose(custom, "yolov5").reason == "--dialect yolov5"


def test_registry_names_are_unique():
    with pytest.raises(ValueError):
        register(DIALECTS[DEFAULT])
    with pytest.raises(ValueError):
        register(dataclasses.replace(TOY, name=AUTO))


def test_a_refusal_is_made_by_its_codes_registered_info():
    refused = Refused("YD103", "unknown module `Cnov`", "did you mean Conv?")
    assert refused.finding.name == REGISTRY["YD103"].name == "unknown-module"
    assert refused.finding.severity.value == "error"
    assert refusing_codes() == {"YD100", "YD101", "YD102", "YD103", "YD104", "YD105", "YD113",
                                "YD504", "YD508", "YD509"}


def _shared_sources() -> list[Path]:
    return [p for p in sorted((ROOT / "yolodiag").rglob("*.py")) if "dialects" not in p.parts]


def _documentation(tree: ast.AST) -> set[int]:
    """Docstrings and the documentation passed to `describe`: prose, not names in code."""
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body and \
                isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            docs.add(id(node.body[0].value))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "describe":
            docs.update(id(a) for a in [*node.args[4:], *(k.value for k in node.keywords)])
    return docs


def test_shared_code_names_no_module_of_any_dialect():
    """No string (but documentation) and no isinstance target in shared code names a module or
    head of a registered dialect's table: shared code asks `built.head` and the dialect."""
    import re

    names = {name for dialect in DIALECTS.values() for name in dialect.modules
             if not name.startswith("nn.")}
    word = re.compile(r"\b(" + "|".join(map(re.escape, sorted(names))) + r")\b")
    found = []
    for path in _shared_sources():
        tree = ast.parse(path.read_text())
        docs = _documentation(tree)
        for node in ast.walk(tree):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    id(node) not in docs:
                text = node.value
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                text = ast.unparse(node.args[1])
            if text and word.search(text):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {word.search(text)[0]}")
    assert found == []


def test_shared_code_reaches_a_dialects_parts_only_through_the_registry():
    """Outside yolodiag/dialects/, no module imports a dialect's own modules (its table, rules,
    blocks, heads, loss...), except type names for annotations."""
    found = []
    for path in _shared_sources():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and ast.unparse(node.test) == "TYPE_CHECKING"
                       for n in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in typing_only:
                module = node.module or ""
                parts = [alias.name for alias in node.names]
                if module.startswith("yolodiag.dialects.") or (
                        module == "yolodiag.dialects" and any(p in DIALECTS for p in parts)):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module}")
    assert found == []
