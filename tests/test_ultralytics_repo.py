"""`--repo` and `--modules` with an Ultralytics tree (yolodiag/dialects/ultralytics/repo.py,
registration.py, stockmatch.py).

tests/data/fake_ultralytics is written for these tests (not taken from Ultralytics): its
ultralytics/nn/tasks.py builds with our own Ultralytics builder and presents the result as
Ultralytics' DetectionModel does, and holds a parse_model that is only ever parsed. Tests marked
`ultralytics` run the real package (8.4.190) in the interpreter $ULTRALYTICS_PYTHON; they skip
without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import shared
from yolodiag.dialects import DIALECTS
from yolodiag.dialects.ultralytics import heads
from yolodiag.dialects.ultralytics.registration import find_checkout, read_registration
from yolodiag.dialects.ultralytics.repo import build_with_repo, is_checkout
from yolodiag.dialects.ultralytics.stockmatch import differences
from yolodiag.dialects.ultralytics.table import MODULES
from yolodiag.findings import Unsupported
from yolodiag.usermodules import RuleSource, load_modules

DATA = Path(__file__).parent / "data"
FAKE = DATA / "fake_ultralytics"
FAKE_TASKS = FAKE / "ultralytics" / "nn" / "tasks.py"
CUSTOM = FAKE / "ultralytics" / "nn" / "modules" / "custom.py"
STOCK = ("yamls", "ultralytics", "stock")


def _check(*args: str) -> tuple[int, dict, str]:
    from yolodiag.cli import app

    result = CliRunner().invoke(app, ["check", *args, "-f", "json"])
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}, result.stderr


def _golden() -> dict:
    return json.loads(shared("golden", "ultralytics", "build.json").read_text())


def _named(tmp_path: Path, source: Path, name: str) -> str:
    """A copy of a YAML under the name Ultralytics reads the scale from (yolo11.yaml ->
    yolo11n.yaml)."""
    copy = tmp_path / name
    shutil.copyfile(source, copy)
    return str(copy)


def _line(text: str) -> int:
    """The line of the fixture's parse_model holding `text`."""
    lines = FAKE_TASKS.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def test_an_ultralytics_tree_is_told_by_its_nn_tasks_py(tmp_path):
    assert is_checkout(FAKE)
    assert not is_checkout(DATA / "fake_yolov7")  # models/yolo.py, no ultralytics/nn/tasks.py
    assert not is_checkout(tmp_path)


def test_anything_but_an_ultralytics_tree_is_unsupported_in_one_line(tmp_path):
    yaml = shared(*STOCK, "yolo11.yaml")
    for repo in (DATA / "fake_yolov7", tmp_path, "yolov5"):
        with pytest.raises(Unsupported, match="expected an Ultralytics checkout") as caught:
            build_with_repo(repo, yaml, [(64, 64)], [])
        assert "\n" not in str(caught.value)


def test_parse_model_sets_bound_to_names_and_its_branches_map_to_our_rules():
    registration = read_registration(FAKE)
    assert registration.source == str(FAKE_TASKS.resolve())
    assert registration.rules == {
        "Conv": "completed", "Gate": "completed", "C2f": "completed+repeats",
        "C3k2": "completed+repeats", "nn.BatchNorm2d": "batchnorm", "Concat": "concat-sum",
        "Detect": "anchor-free-detect", "Segment": "anchor-free-detect",
        "v10Detect": "v10detect", "CBLinear": "cblinear", "CBFuse": "cbfuse"}
    # Stem is left unscaled by an `is not` test, Mixer's arguments rewritten, Halve's width
    # halved: none is a rule of ours, each named with the line that decides it.
    assert registration.unmapped == {"Stem": _line("if m is not Stem:"),
                                     "Mixer": _line("if m is Mixer:"),
                                     "Halve": _line("elif m is Halve:")}


def test_a_scale_tweak_at_other_letters_than_ours_leaves_the_class_unmapped(tmp_path):
    tasks = tmp_path / "ultralytics" / "nn" / "tasks.py"
    tasks.parent.mkdir(parents=True)
    tasks.write_text(FAKE_TASKS.read_text(encoding="utf-8").replace(
        'if scale in {"m", "l", "x"}:', 'if scale in {"l", "x"}:'), encoding="utf-8")
    registration = read_registration(tmp_path)
    assert "C3k2" not in registration.rules
    assert registration.unmapped["C3k2"] == _line("if m is C3k2:")


def test_a_tasks_py_that_is_not_python_is_named_with_its_line(tmp_path):
    tasks = tmp_path / "ultralytics" / "nn" / "tasks.py"
    tasks.parent.mkdir(parents=True)
    tasks.write_text("def parse_model(d, ch):\n    if m in {Conv:\n", encoding="utf-8")
    with pytest.raises(Unsupported, match=r"tasks\.py:2: SyntaxError"):
        read_registration(tmp_path)


def test_the_tree_of_a_file_is_the_nearest_folder_holding_ultralytics_nn_tasks_py(tmp_path):
    assert find_checkout(CUSTOM) == FAKE.resolve()
    site = tmp_path / "site-packages"  # an installed package: its folder's parent
    (site / "ultralytics" / "nn").mkdir(parents=True)
    (site / "ultralytics" / "nn" / "tasks.py").write_text("", encoding="utf-8")
    assert find_checkout(site / "ultralytics" / "nn" / "modules" / "block.py") == site.resolve()
    assert find_checkout(tmp_path / "blocks.py") is None


def test_a_head_that_scales_its_class_scores_is_not_ultralytics():
    class Detect(heads.Detect):
        def forward(self, x):
            out = super().forward(x)
            branch = out.get("one2many", out)
            branch["scores"] = branch["scores"] * 2
            return out

    assert differences(heads.Detect, heads.Detect, "Detect", "anchor-free-detect") is None
    assert "computes other values" in differences(Detect, heads.Detect, "Detect",
                                                  "anchor-free-detect")


def test_modules_of_an_ultralytics_tree_take_its_rules_and_are_judged_by_our_classes():
    entries = load_modules([CUSTOM], dialect=DIALECTS["ultralytics"])
    tasks = str(FAKE_TASKS.resolve())
    gate = entries["Gate"]
    assert (gate.rule, gate.decided, gate.registered_by) == ("completed", RuleSource.YOLO_PY,
                                                             tasks)
    # The file's Concat behaves as ours: it is the stock one, with its rule read.
    assert entries["Concat"].cls is None and entries["Concat"].differs is None
    assert (entries["Concat"].rule, entries["Concat"].registered_by) == ("concat-sum", tasks)
    assert "computes other values" in entries["CBFuse"].differs


def test_check_builds_a_registered_block_of_the_tree_with_its_rule(tmp_path):
    yaml = tmp_path / "gated.yaml"
    yaml.write_text("nc: 2\nscales:\n  n: [0.5, 0.25, 1024]\nbackbone:\n"
                    "  - [-1, 1, Conv, [64, 3, 2]]\n  - [-1, 1, Gate, [128]]\n"
                    "  - [-1, 1, Conv, [128, 3, 2]]\n  - [-1, 1, Conv, [256, 3, 2]]\n"
                    "head:\n  - [[1, 2, 3], 1, Detect, [nc]]\n", encoding="utf-8")
    code, report, _ = _check(str(yaml), "--img", "128", "--modules", str(CUSTOM))
    gate = report["model"]["layers"][1]
    assert code == 0, report["findings"]
    assert (gate["module"], gate["args"]) == ("Gate", [16, 32])  # c1 inserted, 128 * 0.25


def test_check_with_an_ultralytics_checkout_gives_our_check_of_yolo11n(tmp_path):
    yaml = _named(tmp_path, shared(*STOCK, "yolo11.yaml"), "yolo11n.yaml")
    _, ours, _ = _check(yaml, "--img", "128")
    code, theirs, _ = _check(yaml, "--img", "128", "--repo", str(FAKE))
    assert code == 0, theirs
    assert theirs["repo"]["yolo_py"] == str(FAKE_TASKS.resolve())
    assert theirs["model"] == ours["model"]
    assert theirs["findings"] == ours["findings"]
    assert theirs["model"]["params"] == _golden()["yolo11n.yaml"]["params"]


def test_check_with_a_checkout_on_the_seeds_recipe_reads_basicblocks_rule_off_the_build(
        tmp_path):
    yaml = _named(tmp_path, shared("yamls", "ultralytics", "resnet18", "yolo11-resnet18.yaml"),
                  "yolo11n-resnet18.yaml")
    _, ours, _ = _check(yaml, "--img", "128")
    code, theirs, _ = _check(yaml, "--img", "128", "--repo", str(FAKE))
    assert theirs["model"] == ours["model"], code
    # Our own check says which rule it assumed for BasicBlock (YD110); with --repo the rule is
    # what their parse_model did, so nothing is assumed. Every other finding is the same.
    assumed = [f for f in ours["findings"] if f["code"] == "YD110"]
    assert len(assumed) == 1 and "BasicBlock" in assumed[0]["message"]
    assert theirs["findings"] == [f for f in ours["findings"] if f["code"] != "YD110"]
    assert theirs["model"]["detect"]["strides"] == [4, 8, 16]
    assert theirs["model"]["params"] == _golden()["yolo11n-resnet18.yaml"]["params"]


def test_a_yolov7_checkout_for_an_ultralytics_yaml_is_a_usage_error_naming_the_family():
    code, _, stderr = _check(str(shared(*STOCK, "yolo11.yaml")), "--repo",
                             str(DATA / "fake_yolov7"))
    assert code == 2 and "expected an Ultralytics checkout" in stderr


# ---- the real Ultralytics ----

def _ultralytics() -> tuple[str, Path]:
    """($ULTRALYTICS_PYTHON, the tasks.py it imports) when that interpreter imports
    ultralytics; skips the test otherwise."""
    python = os.environ.get("ULTRALYTICS_PYTHON")
    if not python:
        pytest.skip("needs $ULTRALYTICS_PYTHON (an interpreter with ultralytics==8.4.190)")
    probe = subprocess.run([python, "-W", "ignore", "-c",
                            "import ultralytics.nn.tasks as t; print(t.__file__)"],
                           capture_output=True, text=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    if probe.returncode != 0:
        pytest.skip(f"$ULTRALYTICS_PYTHON cannot import ultralytics: {probe.stderr[-200:]}")
    return python, Path(probe.stdout.strip().splitlines()[-1])


@pytest.mark.ultralytics
def test_the_real_parse_model_registers_its_sets_and_our_table_agrees():
    _, tasks = _ultralytics()
    registration = read_registration(tasks.parents[2])
    sets = _golden()["_parse_model_sets"]
    base = {name.replace("torch.nn.", "nn.") for name in sets["base_modules"]}
    repeating = {name.replace("torch.nn.", "nn.") for name in sets["repeat_modules"]}
    # Classify keeps its width unscaled and C2fAttn has its arguments rewritten: no rule of ours.
    assert {"Classify", "C2fAttn"} <= set(registration.unmapped)
    for name in base - {"Classify", "C2fAttn"}:
        expected = "completed+repeats" if name in repeating else "completed"
        assert registration.rules[name] == expected, name
    for name, entry in MODULES.items():
        if entry.decided == "table":
            assert registration.rules.get(name, "passthrough") == entry.rule, name


@pytest.mark.ultralytics
@pytest.mark.parametrize("source, name", [("yolo11.yaml", "yolo11n.yaml"),
                                          ("yolo26.yaml", "yolo26n.yaml"),
                                          ("yolov10n.yaml", "yolov10n.yaml")])
def test_check_repo_pip_on_the_real_ultralytics_equals_our_check(tmp_path, source, name):
    python, tasks = _ultralytics()
    yaml = _named(tmp_path, shared(*STOCK, source), name)
    code, theirs, _ = _check(yaml, "--repo", "pip", "--repo-python", python)
    _, ours, _ = _check(yaml)
    assert code == 0, theirs
    assert theirs["repo"]["yolo_py"] == str(tasks) and theirs["repo"]["python"] == python
    assert theirs["model"] == ours["model"]
    assert theirs["findings"] == ours["findings"]
    golden = _golden()[name]
    assert theirs["model"]["params"] == golden["params"]
    assert theirs["model"]["detect"]["strides"] == golden["detect"]["stride"]


@pytest.mark.ultralytics
def test_check_repo_with_the_installed_package_folder_builds_with_it(tmp_path):
    python, tasks = _ultralytics()
    yaml = _named(tmp_path, shared(*STOCK, "yolov8.yaml"), "yolov8n.yaml")
    code, theirs, _ = _check(yaml, "--img", "320", "--repo", str(tasks.parents[1]),
                             "--repo-python", python)
    _, ours, _ = _check(yaml, "--img", "320")
    assert code == 0, theirs
    assert theirs["repo"]["yolo_py"] == str(tasks)
    assert theirs["model"] == ours["model"]  # the legacy head layout read off the rows too
    assert theirs["model"]["params"] == _golden()["yolov8n.yaml"]["params"]
    assert theirs["model"]["detect"]["legacy"] is True
