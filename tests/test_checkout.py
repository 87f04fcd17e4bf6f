"""--modules FILE inside a YOLOv5 checkout: its yolo.py's parse_model read statically for the
rules, stock classes of the file recognised as stock by behaviour, a one-line pointer to --repo
when the file cannot run here; YD106 grouped and kept off rows a build failure explains; the
default check's line on the seed's BasicBlock (yolodiag/registration.py, stockmatch.py,
checks/blocks.py).

tests/data/fake_checkout is written for these tests (not taken from YOLOv5): a models/yolo.py
whose parse_model is only ever parsed, a models/common.py of small classes importing the
checkout's own helpers.py. The test marked `yolov5` runs the real file: the yolov5 package's
source copied into tmp_path, with the seed's BasicBlock appended and registered.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn
from typer.testing import CliRunner

from conftest import ROOT, TINY, oracle_python, shared, validate, write_yaml
from yolodiag.cli import app
from yolodiag.dialects.yolov5 import blocks
from yolodiag.dialects.yolov5.registration import find_checkout, read_registration
from yolodiag.dialects.yolov5.stockmatch import differences
from yolodiag.dialects.yolov5.table import MODULES
from yolodiag.findings import Unsupported
from yolodiag.usermodules import RuleSource, load_modules

runner = CliRunner()
CHECKOUT = Path(__file__).parent / "data" / "fake_checkout"
COMMON = CHECKOUT / "models" / "common.py"
YOLO_PY = str((CHECKOUT / "models" / "yolo.py").resolve())


def check_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["check", *args, "-f", "json"])
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


def tiny_with(tmp_path: Path, row: str, comment: str = "# 3 /8") -> Path:
    """TINY with layer 3 replaced by `row`."""
    return write_yaml(tmp_path, TINY.replace("[-1, 1, Conv, [64, 3, 2]],    # 3 /8",
                                             f"{row},  {comment}"))


def by_code(report: dict, code: str) -> list[dict]:
    return [f for f in report["findings"] if f["code"] == code]


def test_parse_model_branches_are_mapped_to_rules_without_running_yolo_py(tmp_path):
    registration = read_registration(CHECKOUT)
    assert registration.source == YOLO_PY
    assert registration.rules == {
        "Conv": "channels", "Down": "channels", "BasicBlock": "channels",
        "Plain_not_here": "channels", "C3": "channels+repeats", "Concat": "concat-sum",
        "Detect": "detect", "Attention": "input", "Widen": "out=args0"}
    assert registration.unmapped == {"Gate": 26}  # its line in the fixture's yolo.py
    # A yolo.py that would stop the process if it ran is read all the same.
    (tmp_path / "models").mkdir()
    shutil.copy(CHECKOUT / "models" / "yolo.py", tmp_path / "models" / "yolo.py")
    with open(tmp_path / "models" / "yolo.py", "a", encoding="utf-8") as f:
        f.write("\nraise SystemExit('yolo.py was run')\n")
    assert read_registration(tmp_path).rules == registration.rules


def test_a_yolo_py_that_is_not_python_is_one_line_naming_its_line(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolo.py").write_text("def parse_model(d, ch):\n    if m in {\n",
                                                 encoding="utf-8")
    with pytest.raises(Unsupported, match=r"yolo\.py:\d+: SyntaxError") as caught:
        read_registration(tmp_path)
    assert "\n" not in str(caught.value)


def test_the_checkout_is_the_nearest_folder_with_models_yolo_py(tmp_path):
    assert find_checkout(COMMON) == CHECKOUT.resolve()
    assert find_checkout(CHECKOUT / "helpers.py") == CHECKOUT.resolve()
    assert find_checkout(write_yaml(tmp_path, "", "blocks.py")) is None


def test_classes_of_a_checkout_file_take_its_parse_models_rules():
    entries = load_modules([COMMON])
    down, plain, gate = entries["Down"], entries["Plain"], entries["Gate"]
    assert (down.rule, down.decided, down.registered_by) == ("channels", RuleSource.YOLO_PY,
                                                             YOLO_PY)
    # In no branch of their parse_model: its fallback, as their YOLOv5 builds it.
    assert (plain.rule, plain.decided) == ("passthrough", RuleSource.YOLO_PY)
    assert (gate.rule, gate.decided, gate.registered_by) == (
        "channels", RuleSource.UNMAPPED, f"{YOLO_PY}:26")
    # The file's Concat behaves as the stock one: it is the stock one, with its rule read.
    assert entries["Concat"] == MODULES["Concat"] and entries["Concat"].cls is None
    assert entries["Concat"].registered_by == YOLO_PY and entries["Concat"].differs is None
    assert entries["C3"].cls is not None and "cv.weight" in entries["C3"].differs
    assert str(CHECKOUT.resolve()) not in sys.path  # its root was on sys.path only to run it


def test_an_explicit_rule_wins_over_the_checkouts_yolo_py():
    entry = load_modules([COMMON], ["Plain=channels"])["Plain"]
    assert (entry.rule, entry.decided) == ("channels", RuleSource.OPTION)


def test_check_in_a_checkout_reports_differing_stock_names_only_and_the_yolo_py_read(tmp_path):
    model = tiny_with(tmp_path, "[-1, 1, Down, [64]]")  # TINY also has C3 and Concat
    code, report = check_json(str(model), "--modules", str(COMMON))
    assert code == 0, report["findings"]
    validate(report)
    assert not by_code(report, "YD106") and not by_code(report, "YD110")
    replaced = by_code(report, "YD111")
    assert [f["data"]["module"] for f in replaced] == ["C3"]  # not Concat: it is the stock one
    assert replaced[0]["message"].startswith(f"your C3 ({COMMON}) differs from stock YOLOv5's: ")
    assert report["model"]["layers"][3]["args"] == [32, 64]
    modules = report["modules"]
    assert modules["registrations"] == [YOLO_PY]
    rules = {b["name"]: (b["rule"], b["decided"]) for b in modules["blocks"]}
    assert rules["Down"] == ("channels", "yolo.py") and rules["Concat"][0] == "concat-sum"
    text = runner.invoke(app, ["check", str(model), "--modules", str(COMMON)],
                         terminal_width=300).output
    assert f"--modules: rules read from {YOLO_PY} (its parse_model, statically): " in text
    assert "Down channels" in text


def test_a_block_their_yolo_py_does_not_register_fails_as_their_yolov5_would(tmp_path):
    code, report = check_json(str(tiny_with(tmp_path, "[-1, 1, Plain, [64]]")), "--modules",
                              str(COMMON))
    assert code == 1
    assert [f["code"] for f in report["findings"] if f["severity"] != "info"] == ["YD202"]
    assert "Plain(64) cannot be built" in report["findings"][0]["message"]
    assert f"in none of the channel-aware branches of {YOLO_PY}'s parse_model" in \
        report["findings"][0]["message"]
    # Registering it in their yolo.py is all it takes: yolodiag reads that, no --rule needed.
    assert "register Plain in parse_model's channel-aware set" in report["findings"][0]["hint"]
    assert "--rule" not in report["findings"][0]["hint"]
    # With both widths written the raw call builds, for widths parse_model does not count.
    _, report = check_json(str(tiny_with(tmp_path, "[-1, 1, Plain, [32, 64]]")), "--modules",
                           str(COMMON))
    (finding,) = by_code(report, "YD106")
    assert finding["severity"] == "error" and finding["data"]["layers"] == [3]
    assert "layer 3 Plain(32, 64) gives 64 channels (c2), but parse_model counts its output " \
           "as 32" in finding["message"]


def test_a_branch_no_rule_mirrors_is_reported_with_its_line(tmp_path):
    _, report = check_json(str(tiny_with(tmp_path, "[-1, 1, Gate, [64]]")), "--modules",
                           str(COMMON))
    (info,) = by_code(report, "YD110")
    assert f"has a parse_model branch of its own at {YOLO_PY}:26" in info["message"]
    assert "assumes channels" in info["message"]


def _checkout_importing(tmp_path: Path, module: str) -> Path:
    root = tmp_path / "checkout"
    (root / "models").mkdir(parents=True)
    shutil.copy(CHECKOUT / "models" / "yolo.py", root / "models" / "yolo.py")
    (root / "models" / "common.py").write_text(f"import math\nimport {module}\n",
                                               encoding="utf-8")
    return root


def test_a_file_whose_imports_fail_here_points_to_repo_in_one_line(tmp_path):
    root = _checkout_importing(tmp_path, "yolodiag_test_no_cv2")
    common = root / "models" / "common.py"
    result = runner.invoke(app, ["check", str(write_yaml(tmp_path, TINY)), "--modules",
                                 str(common)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert f"{common}:2: cannot run the --modules file here: its import " \
           "(`import yolodiag_test_no_cv2`) fails with ModuleNotFoundError" in line
    assert f"use `--repo {root.resolve()}` (builds with your own YOLOv5 in its interpreter" in line
    assert line.endswith("or pass a file holding just your classes")
    outside = write_yaml(tmp_path, "import yolodiag_test_no_cv2\n", "blocks.py")
    with pytest.raises(Unsupported, match="use `--repo <your YOLOv5 checkout>`"):
        load_modules([outside])


def test_rows_of_one_module_with_the_same_problem_are_one_yd106(tmp_path):
    model = write_yaml(tmp_path, TINY.replace(
        "[-1, 1, Conv, [64, 3, 2]],    # 3 /8", "[-1, 1, nn.Conv2d, [32, 64, 3, 2, 1]],").replace(
        "[-1, 1, Conv, [128, 3, 2]],   # 4 /16", "[-1, 1, nn.Conv2d, [64, 128, 3, 2, 1]],"))
    _, report = check_json(str(model))
    (finding,) = by_code(report, "YD106")
    assert finding["data"]["layers"] == [3, 4] and finding["location"]["layer"] == 3
    assert "layer 3 nn.Conv2d(32, 64, 3, 2, 1) gives 64 channels" in finding["message"]
    assert "layer 4 nn.Conv2d(64, 128, 3, 2, 1) is built for 64 input channels " \
           "(in_channels) but receives 32" in finding["message"]


def test_bundled_seed_says_basicblock_is_not_yolov5_and_what_was_assumed():
    _, report = check_json()
    (info,) = by_code(report, "YD110")
    assert info["severity"] == "info" and info["data"]["layers"] == [1, 3, 5, 7, 9]
    assert info["message"].startswith("BasicBlock is not a YOLOv5 v7.0 module: yolodiag builds "
                                      "it as the seed's block (yolodiag/dialects/yolov5/seed.py)")
    assert "registered in parse_model's channel-aware set" in info["message"]
    assert "(c1, c2, *args)" in info["message"]
    assert "--modules" in info["hint"] and "--rule BasicBlock=passthrough" in info["hint"]
    _, declared = check_json("--rule", "BasicBlock=channels")
    assert not by_code(declared, "YD110")  # said otherwise: nothing assumed


def test_a_class_is_the_stock_one_only_when_it_builds_and_computes_the_same():
    class SameConcat(nn.Module):
        def __init__(self, dimension=1):
            super().__init__()
            self.d = dimension

        def forward(self, x):
            return blocks.torch.cat(x, self.d)

    class UnnormalisedConv(blocks.Conv):  # the same weights, its BatchNorm skipped
        def forward(self, x):
            return self.act(self.conv(x))

    class Strict(blocks.Conv):
        def __init__(self, c1, c2, k=1, s=1):
            if c1 != c2:
                raise ValueError("widths must match")
            super().__init__(c1, c2, k, s)

    assert differences(SameConcat, blocks.Concat, "Concat", "concat-sum") is None
    assert differences(blocks.Conv, blocks.Conv, "Conv", "channels") is None
    assert differences(UnnormalisedConv, blocks.Conv, "Conv", "channels").startswith(
        "with the same weights, Conv(16, 16) computes other values")
    assert differences(Strict, blocks.Conv, "Conv", "channels") == (
        "Conv(8, 16) raises ValueError: widths must match")


@pytest.mark.yolov5
def test_the_real_common_py_of_a_checkout_with_the_seeds_block(tmp_path):
    """Acceptance: YOLOv5 v7.0's own common.py plus the seed's BasicBlock, registered in the
    yolo.py beside it: no stock class called the user's, the registration read from that
    yolo.py; where its imports fail (yolodiag's own venv), one line pointing to --repo."""
    python = oracle_python()
    if subprocess.run([python, "-c", "import typer, rich"], capture_output=True).returncode:
        pytest.skip(f"{python} lacks typer and rich (pip install typer rich there)")
    package = subprocess.run([python, "-W", "ignore", "-c",
                              "import os, yolov5; print(os.path.dirname(yolov5.__file__))"],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "YOLO_OFFLINE": "1"}).stdout.split()[-1]
    root = tmp_path / "yolov5"
    shutil.copytree(package, root, ignore=shutil.ignore_patterns("*.pt", "__pycache__"))
    common, yolo = root / "models" / "common.py", root / "models" / "yolo.py"
    seed = shared("yamls", "resnet18", "basicblock_seed.py").read_text(encoding="utf-8")
    common.write_text(common.read_text(encoding="utf-8") + "\n\n" + seed, encoding="utf-8")
    text = yolo.read_text(encoding="utf-8")
    assert text.count("DWConvTranspose2d, C3x}") == 1
    yolo.write_text(text.replace("DWConvTranspose2d, C3x}", "DWConvTranspose2d, C3x, BasicBlock}"),
                    encoding="utf-8")
    model = str(shared("yamls", "resnet18", "yolov5s-resnet18.yaml"))
    done = subprocess.run([python, "-W", "ignore", "-c", "from yolodiag.cli import main; main()",
                           "check", model, "--modules", str(common), "-f", "json"],
                          capture_output=True, text=True,
                          env={**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert not [f for f in report["findings"] if f["code"] in ("YD106", "YD110", "YD111")]
    assert report["modules"]["registrations"] == [str(yolo.resolve())]
    (block,) = [b for b in report["modules"]["blocks"] if b["name"] == "BasicBlock"]
    assert (block["rule"], block["decided"]) == ("channels", "yolo.py")
    _, ours = check_json(model)
    assert report["model"]["layers"] == ours["model"]["layers"]
    try:
        import cv2  # noqa: F401
    except ImportError:
        here = runner.invoke(app, ["check", model, "--modules", str(common)])
        assert here.exit_code == 2
        (line,) = here.stderr.strip().splitlines()
        assert "import cv2" in line and f"--repo {root.resolve()}" in line
