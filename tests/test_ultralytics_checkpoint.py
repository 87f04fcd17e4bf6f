"""Ultralytics checkpoints read without running them and `BaseModel.load` reproduced: the two
recorded checkpoints, the eight `Transferred X/Y` lines recorded from Ultralytics 8.4.190
(shared/golden/ultralytics/transfers.json), a poisoned pickle, and the traps the weights
command names (the embedded YAML rebuilt, rows shifted)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from checkpoints import ultralytics_crafted, ultralytics_midtrain
from conftest import PROJECT_SHARED, shared
from yolodiag import commands
from yolodiag.build.builder import build
from yolodiag.cli import app
from yolodiag.dialects import choose_checkpoint
from yolodiag.dialects.ultralytics.checkpoint import read_checkpoint, transfer
from yolodiag.findings import Refused
from yolodiag.spec import load_spec

runner = CliRunner()
GOLDEN = shared("golden", "ultralytics")
RECORDED = json.loads((GOLDEN / "transfers.json").read_text())
RELEASE = GOLDEN / "checkpoints" / "yolo11n-release-format.pt"
BEST = GOLDEN / "checkpoints" / "yolo11n-shapes-3ep-best.pt"
YOLO11N = shared("yamls", "ultralytics", "stock") / "yolo11n.yaml"  # yolo11.yaml at scale n
RECIPE = shared("yamls", "ultralytics", "resnet18") / "yolo11n-resnet18.yaml"


def _cfg(name: str):
    """A scaled name (yolo11n.yaml) read from its family's file, as Ultralytics finds it."""
    folder = "resnet18" if "resnet18" in name else "stock"
    own = PROJECT_SHARED / "yamls" / "ultralytics" / folder / name  # yolov10n.yaml is a file
    family = name if own.is_file() else re.sub(r"(\d)[nsmlx]u?(-|\.yaml)", r"\1\2", name)
    return load_spec(shared("yamls", "ultralytics", folder, family).parent / name)


def _listed(value) -> list[str]:  # long lists were recorded as their repr
    return ast.literal_eval(value) if isinstance(value, str) else value


@pytest.mark.parametrize("scenario", RECORDED["scenarios"],
                         ids=lambda s: f"{s['cfg']}-{s['weights']}-nc{s['nc']}")
def test_transfer_equals_the_logged_line_and_the_keys_it_moved(scenario):
    info = read_checkpoint(GOLDEN / RECORDED["checkpoints"][scenario["weights"]]["file"])
    spec = _cfg(scenario["cfg"])
    nc = None if scenario["nc"] == "yaml" else int(scenario["nc"])
    names = scenario["names_after"] if nc and isinstance(scenario["names_after"], dict) else None
    moved = transfer(info, spec, nc, names={int(k): v for k, v in names.items()} if names
                     else None)
    assert moved.as_dict()["log"] == scenario["log"]
    filled = {k.key for k in moved.keys if k.status == "filled"}  # counted, not a key match
    assert {k.key for k in moved.keys if not k.counted} | filled == set(
        _listed(scenario["keys_not_from_source"]))
    fresh = build(spec, nc=nc or spec.nc, device="meta").model.state_dict()
    changed = {k.key for k in moved.keys if tuple(fresh[k.key].shape) != k.model_shape}
    assert changed == set(_listed(scenario["state_dict_changed_shape"]))


def test_recorded_checkpoints_are_read_as_ultralytics_without_running_them():
    release, best = read_checkpoint(RELEASE), read_checkpoint(BEST)
    assert release.layout == "Ultralytics (ultralytics.nn.tasks.DetectionModel)"
    assert len(release.state) == 499 and release.epoch == -1 and release.half
    assert release.names[0] == "person" and len(release.names) == 80
    assert best.names == {0: "red", 1: "green", 2: "blue"} and best.opt["epochs"] == 3
    assert choose_checkpoint(RELEASE).dialect.name == "ultralytics"


def test_a_midtraining_last_pt_is_read_through_its_ema(tmp_path):
    spec = _cfg("yolo11n.yaml")
    model = build(spec, nc=3, device="cpu").model
    embedded = {**yaml.safe_load(Path(spec.path).read_text()), "nc": 3, "scale": "n"}
    path = ultralytics_midtrain(model, embedded, tmp_path / "last.pt")
    info = read_checkpoint(path)  # `model` is None there: Ultralytics loads the EMA
    assert info.has_ema and info.half and info.epoch == 1 and info.opt == {"epochs": 3,
                                                                         "batch": 16}
    assert list(info.state) == list(model.state_dict())
    assert transfer(info, spec, 3).as_dict()["log"] == \
        "Transferred 499/499 items from pretrained weights"
    assert choose_checkpoint(path).dialect.name == "ultralytics"


def test_class_branch_replaced_by_the_checkpoints_copy_when_nc_changes():
    moved = transfer(read_checkpoint(RELEASE), _cfg("yolo11n.yaml"), 3)
    hidden = {k.key: k.model_shape for k in moved.keys}
    assert hidden["model.23.cv3.0.0.1.conv.weight"] == (80, 64, 1, 1)  # c3: 64 -> the source's 80
    assert hidden["model.23.cv3.0.2.weight"] == (3, 80, 1, 1)  # a new last conv for 3 classes
    recipe = transfer(read_checkpoint(RELEASE), _cfg("yolo11n-resnet18.yaml"), 3)
    copied = [k.key for k in recipe.keys if k.status == "copied"]
    # the head moved to 24: the copy brings layer 23's learnt branch, the log counts none of it
    assert copied and all(k.startswith("model.24.cv3.") for k in copied)


def test_weights_names_the_shifted_rows_of_the_recipe_and_the_partial_transfer():
    report = commands.weights(RECIPE, RELEASE)
    assert report.sections["transfer"]["log"] == \
        "Transferred 11/403 items from pretrained weights"
    shift = next(f for f in report.findings if f.code == "YD503" and "offset" in f.data)
    assert shift.data["offset"] == 1 and 24 in shift.data["layers"]
    assert {"YD502", "YD503"} <= {f.code for f in report.findings} and report.exit_code == 0


def test_weights_from_the_trained_best_into_yolo11n_at_its_class_count_moves_everything():
    report = commands.weights(YOLO11N, BEST, nc=3)
    assert report.sections["transfer"]["log"] == \
        "Transferred 499/499 items from pretrained weights"
    assert report.findings == [] and report.exit_code == 0


def test_model_pt_rebuilds_the_embedded_yaml_not_the_edited_one():
    result = runner.invoke(app, ["weights", str(RECIPE), "--weights", str(BEST), "--no-cfg"])
    assert result.exit_code == 1 and "YD501" in result.output
    assert "with `model=` the .pt, Ultralytics' trainer builds" in result.output


def test_poisoned_ultralytics_checkpoint_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    path = ultralytics_crafted(tmp_path / "yolo11n.pt", marker)
    with pytest.raises(Refused) as refused:
        read_checkpoint(path)
    assert refused.value.finding.code == "YD504"
    assert refused.value.finding.data["globals"] == ["posix.system"]
    result = runner.invoke(app, ["weights", str(YOLO11N), "--weights", str(path)])
    assert result.exit_code == 2 and "YD504" in result.stderr and not marker.exists()


def test_a_yolov5_checkpoint_for_an_ultralytics_yaml_is_named_foreign():
    with pytest.raises(Refused) as refused:
        read_checkpoint(shared("golden", "checkpoints", "yolov5s-release-format.pt"))
    assert refused.value.finding.code == "YD509"
    assert refused.value.finding.data == {"framework": "YOLOv5",
                                          "model_class": "models.yolo.DetectionModel"}


ORACLE_SCRIPT = Path(__file__).parent / "oracle" / "ultralytics_transfers.py"
# Stock names whose heads differ in what BaseModel.load replaces: Detect (YOLOv8's legacy and
# YOLO11's class branch), v10Detect and YOLO26's end-to-end one2one_cv3, other widths.
ORACLE_CFGS = ("yolo11n.yaml", "yolo11s.yaml", "yolov8n.yaml", "yolo12n.yaml", "yolov10n.yaml",
               "yolo26n.yaml", "yolov8s.yaml", "yolov5nu.yaml", "yolov6n.yaml")
SHARED_NAMES = {"0": "person", "1": "car", "2": "dog"}  # COCO's names: rows remapped by name


@pytest.mark.ultralytics
def test_transfers_equal_the_real_load_across_heads_and_class_counts(tmp_path):
    python = os.environ.get("ULTRALYTICS_PYTHON")
    if not python:
        pytest.skip("needs $ULTRALYTICS_PYTHON (an interpreter with ultralytics==8.4.190)")
    cases = [{"checkpoint": str(path), "cfg": cfg, "nc": nc, "names": names}
             for path in (RELEASE, BEST) for cfg in ORACLE_CFGS
             for nc, names in ((3, None), (80, None), (3, SHARED_NAMES))]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run([python, str(ORACLE_SCRIPT), str(tmp_path / "cases.json"),
                           str(tmp_path / "logs.json")], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads((tmp_path / "logs.json").read_text())
    infos = {path: read_checkpoint(path) for path in (RELEASE, BEST)}
    ours = [transfer(infos[Path(c["checkpoint"])], _cfg(c["cfg"]), c["nc"],
                     names={int(k): v for k, v in c["names"].items()} if c["names"] else None
                     ).as_dict()["log"] for c in cases]
    assert ours == theirs
