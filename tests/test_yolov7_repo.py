"""`--repo` on a YOLOv7 checkout (yolodiag/dialects/yolov7/repo.py, registration.py, stockmatch.py).

tests/data/fake_yolov7 is written for these tests (not taken from YOLOv7): its models/yolo.py
builds with our own YOLOv7 builder and presents the result as YOLOv7's Model does, and holds a
parse_model that is only ever parsed. Tests marked `yolov7` run the real YOLOv7: a checkout at
$YOLOV7_REPO (WongKinYiu/yolov7 a207844) in the interpreter $YOLOV7_PYTHON (made by
benchmarks/make_yolov7_venv.sh); they skip without both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT, shared
from yolodiag.dialects.yolov7 import blocks
from yolodiag.dialects.yolov7.registration import find_checkout, read_registration
from yolodiag.dialects.yolov7.repo import build_with_repo, is_checkout
from yolodiag.dialects.yolov7.stockmatch import differences
from yolodiag.findings import Unsupported

DATA = Path(__file__).parent / "data"
FAKE, FAKE_YOLOV5 = DATA / "fake_yolov7", DATA / "fake_yolov5"
TINY7 = shared("yamls", "yolov7", "stock", "training", "yolov7-tiny.yaml")


def _check(*args: str) -> tuple[int, dict, str]:
    from yolodiag.cli import app

    result = CliRunner().invoke(app, ["check", *args, "-f", "json"])
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}, result.stderr


def test_a_yolov7_checkout_is_told_by_its_yolo_py_naming_idetect():
    assert is_checkout(FAKE)
    assert not is_checkout(FAKE_YOLOV5)  # a YOLOv5 checkout has models/yolo.py, no IDetect
    assert not is_checkout(DATA / "no_such_folder")


def test_anything_but_a_yolov7_checkout_is_unsupported_in_one_line(tmp_path):
    for repo in (FAKE_YOLOV5, tmp_path, "pip"):
        with pytest.raises(Unsupported, match="expected a YOLOv7 checkout") as caught:
            build_with_repo(repo, TINY7, [(64, 64)], [])
        assert "\n" not in str(caught.value)


def test_parse_model_of_a_yolov7_checkout_maps_shortcut_and_reorg_and_the_repeat_list():
    registration = read_registration(FAKE)
    assert registration.source == str((FAKE / "models" / "yolo.py").resolve())
    assert registration.rules == {
        "nn.Conv2d": "channels", "Conv": "channels", "RepConv": "channels", "Gate": "channels",
        "SPPCSPC": "channels+repeats", "BottleneckCSPA": "channels+repeats",
        "nn.BatchNorm2d": "batchnorm", "Concat": "concat-sum", "Shortcut": "shortcut",
        "Detect": "detect", "IDetect": "detect", "IAuxDetect": "detect", "ReOrg": "reorg"}
    assert registration.unmapped == {"Halve": 62}  # `c2 = ch[f] // 2`: its line in the fixture


def test_the_yolov7_checkout_of_a_file_skips_a_yolov5_one_around_it(tmp_path):
    inner = tmp_path / "yolov7"
    (inner / "models").mkdir(parents=True)
    (inner / "models" / "yolo.py").write_text("class IDetect:\n    pass\n", encoding="utf-8")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolo.py").write_text("class Detect:\n    pass\n", encoding="utf-8")
    assert find_checkout(inner / "models" / "common.py") == inner.resolve()
    assert find_checkout(tmp_path / "models" / "common.py") is None


def test_a_shortcut_that_subtracts_is_not_yolov7s():
    class Shortcut(blocks.Shortcut):
        def forward(self, x):
            return x[0] - x[1]

    assert differences(blocks.Shortcut, blocks.Shortcut, "Shortcut", "shortcut") is None
    assert "computes other values" in differences(Shortcut, blocks.Shortcut, "Shortcut",
                                                  "shortcut")


def test_check_with_a_yolov7_checkout_gives_our_check_of_yolov7_tiny():
    _, ours, _ = _check(str(TINY7), "--img", "128")
    code, theirs, _ = _check(str(TINY7), "--img", "128", "--repo", str(FAKE))
    assert code == 0, theirs
    assert theirs["repo"]["yolo_py"] == str((FAKE / "models" / "yolo.py").resolve())
    assert theirs["model"] == ours["model"]
    assert theirs["findings"] == ours["findings"]
    assert theirs["model"]["detect"]["strides"] == [8, 16, 32]


def test_a_yolov5_checkout_for_a_yolov7_yaml_is_a_usage_error_naming_the_family():
    code, _, stderr = _check(str(TINY7), "--repo", str(FAKE_YOLOV5))
    assert code == 2 and "expected a YOLOv7 checkout" in stderr


# ---- the real YOLOv7 ----

def _yolov7() -> tuple[str, Path]:
    """($YOLOV7_PYTHON, $YOLOV7_REPO) when that interpreter imports the checkout's yolo.py;
    skips the test otherwise."""
    python, repo = os.environ.get("YOLOV7_PYTHON"), os.environ.get("YOLOV7_REPO")
    if not python or not repo or not is_checkout(repo):
        pytest.skip("needs $YOLOV7_PYTHON and $YOLOV7_REPO (a YOLOv7 checkout)")
    probe = subprocess.run([python, "-W", "ignore", "-c", "import models.yolo"], cwd=repo,
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"$YOLOV7_PYTHON cannot import $YOLOV7_REPO's models/yolo.py: "
                    f"{probe.stderr.decode()[-200:]}")
    return python, Path(repo)


@pytest.fixture(scope="module")
def seed_checkout(tmp_path_factory) -> Path:
    """$YOLOV7_REPO copied with the seed's BasicBlock registered (tests/oracle/yolov7_patch.py)."""
    _, repo = _yolov7()
    sys.path.insert(0, str(ROOT / "tests" / "oracle"))
    from yolov7_patch import patched_checkout

    return patched_checkout(repo, shared("yamls", "resnet18", "basicblock_seed.py"),
                            tmp_path_factory.mktemp("yolov7"))


@pytest.mark.yolov7
def test_check_repo_on_the_real_yolov7_tiny_equals_our_check():
    python, repo = _yolov7()
    code, theirs, _ = _check(str(TINY7), "--repo", str(repo), "--repo-python", python)
    _, ours, _ = _check(str(TINY7))
    assert code == 0, theirs
    assert theirs["repo"]["yolo_py"] == str((repo / "models" / "yolo.py").resolve())
    assert theirs["model"] == ours["model"]
    assert theirs["findings"] == ours["findings"]
    golden = json.loads(shared("golden", "yolov7", "build.json").read_text())
    assert theirs["model"]["params"] == golden["training/yolov7-tiny.yaml"]["params"]


@pytest.mark.yolov7
@pytest.mark.parametrize("name, strides", [("yolov7-tiny-resnet18.yaml", [4, 8, 16]),
                                           ("yolov7-tiny-resnet18-fixed.yaml", [8, 16, 32])])
def test_check_repo_on_yolov7_with_the_seeds_block_equals_our_check(seed_checkout, name, strides):
    python, _ = _yolov7()
    yaml = str(shared("yamls", "yolov7", "resnet18", name))
    code, theirs, _ = _check(yaml, "--repo", str(seed_checkout), "--repo-python", python)
    _, ours, _ = _check(yaml)
    assert theirs["model"] == ours["model"], code
    # Our own check says which rule it assumed for BasicBlock (YD110); with --repo the rule is
    # what their parse_model did, so nothing is assumed. Every other finding is the same.
    assumed = [f for f in ours["findings"] if f["code"] == "YD110"]
    assert len(assumed) == 1 and "BasicBlock" in assumed[0]["message"]
    assert theirs["findings"] == [f for f in ours["findings"] if f["code"] != "YD110"]
    assert theirs["model"]["detect"]["strides"] == strides
    golden = json.loads(shared("golden", "yolov7", "build.json").read_text())
    assert theirs["model"]["params"] == golden[f"resnet18/{name}"]["params"]


def test_the_oracle_patch_registers_basicblock_in_the_channel_aware_list_only(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "oracle"))
    from yolov7_patch import MARKER, patched_checkout

    checkout = tmp_path / "y7"
    (checkout / "models").mkdir(parents=True)
    lists = f"if m in [Conv, {MARKER}\n    if m in [DownC, {MARKER}\n"
    (checkout / "models" / "yolo.py").write_text(lists, encoding="utf-8")
    (checkout / "models" / "common.py").write_text("import torch\n", encoding="utf-8")
    copy = patched_checkout(checkout, shared("yamls", "resnet18", "basicblock_seed.py"),
                            tmp_path / "cache")
    text = (copy / "models" / "yolo.py").read_text()
    assert text.count("BasicBlock") == 1 and text.index("BasicBlock") < text.index("DownC")
    assert "class BasicBlock" in (copy / "models" / "common.py").read_text()
    assert (checkout / "models" / "yolo.py").read_text() == lists  # the checkout untouched


def test_modules_of_a_yolov7_checkout_take_its_rules_and_are_judged_by_yolov7s_classes():
    from yolodiag.dialects import DIALECTS
    from yolodiag.usermodules import RuleSource, load_modules

    yolov7 = DIALECTS["yolov7"]
    entries = load_modules([FAKE / "models" / "common.py"], dialect=yolov7)
    yolo_py = str((FAKE / "models" / "yolo.py").resolve())
    gate = entries["Gate"]
    assert (gate.rule, gate.decided, gate.registered_by) == ("channels", RuleSource.YOLO_PY,
                                                             yolo_py)
    # The file's Shortcut behaves as YOLOv7's: it is the stock one, with its rule read.
    assert entries["Shortcut"].cls is None and entries["Shortcut"].differs is None
    assert entries["Shortcut"].rule == "shortcut"
    assert entries["Shortcut"].registered_by == yolo_py
    assert "computes other values" in entries["ReOrg"].differs
