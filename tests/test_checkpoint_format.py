"""A `--weights` file named for what it is: corrupt or truncated (YD508), another framework's
(YD509), unsafe (YD504) only for a pickle that names code; and the transfer findings of one
cause, a width mismatch (YD510), with BatchNorm's step counters never counted as learnt."""

from __future__ import annotations

import pickle
import shutil
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from checkpoints import crafted, yolov5_layout
from conftest import TINY, shared, write_yaml
from yolodiag import commands
from yolodiag.build.builder import build
from yolodiag.cli import app
from yolodiag.dialects.yolov5.checkpoint import read_checkpoint, transfer
from yolodiag.findings import Refused, Severity
from yolodiag.spec import load_spec, parse_spec

runner = CliRunner()
RELEASE = ("golden", "checkpoints", "yolov5s-release-format.pt")
NANO = ("golden", "checkpoints", "yolov5n-midtrain-pkg.pt")


def refused(path: Path) -> Refused:
    with pytest.raises(Refused) as caught:
        read_checkpoint(path)
    return caught.value


def weights_cli(tmp_path: Path, weights: Path):
    return runner.invoke(app, ["weights", str(write_yaml(tmp_path, TINY)), "--weights",
                               str(weights)])


def assert_one_line_exit_2(result, code: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{code} " in lines[0] and "Traceback" not in result.stderr
    return lines[0]


def test_truncated_release_checkpoint_is_corrupt_or_truncated_not_unsafe(tmp_path):
    whole = shared(*RELEASE)
    cut = tmp_path / "last.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    error = refused(cut)
    assert error.finding.code == "YD508" and error.finding.name == "checkpoint-unreadable"
    assert error.finding.data == {"found": "truncated zip", "bytes": cut.stat().st_size}
    line = assert_one_line_exit_2(weights_cli(tmp_path, cut), "YD508")
    assert "truncated zip archive" in line and "torch.load" not in line


@pytest.mark.parametrize("content, found, words", [
    (b"", "empty", "0 bytes"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab12\nsize 14669818\n", "text",
     "a Git LFS pointer"),
    (b"<!DOCTYPE html><html><body>Not Found</body></html>", "text", "an HTML page"),
    ("weights: yolov5s\n\u00e9t\u00e9\n".encode(), "text", "but text"),
    (b"\x00\x01\x02\x03binary", "not a zip archive", "neither torch.save's zip nor a pickle"),
])
def test_empty_text_and_other_bytes_say_what_was_found(tmp_path, content, found, words):
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    finding = refused(path).finding
    assert (finding.code, finding.data["found"]) == ("YD508", found)
    assert words in finding.message and "torch.load" not in finding.message + finding.hint
    assert_one_line_exit_2(weights_cli(tmp_path, path), "YD508")


def test_legacy_pickle_and_zip_without_data_pkl_are_unreadable(tmp_path):
    legacy = tmp_path / "legacy.pt"
    torch.save({"model": None}, legacy, _use_new_zipfile_serialization=False)
    assert refused(legacy).finding.data["found"] == "pickle"
    bare = tmp_path / "bare.pt"
    bare.write_bytes(pickle.dumps({"epoch": 1}))
    assert refused(bare).finding.data["found"] == "pickle"
    archive = tmp_path / "notes.pt"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("notes.txt", "not a checkpoint")
    assert refused(archive).finding.data["found"] == "zip without data.pkl"


def test_changed_bytes_inside_a_complete_archive_fail_the_crc_check(tmp_path):
    path = tmp_path / "copy.pt"
    shutil.copy(shared(*RELEASE), path)
    with zipfile.ZipFile(path) as archive:
        member = next(i for i in archive.infolist() if "/data/" in i.filename)
    data = bytearray(path.read_bytes())
    local = member.header_offset  # the local header's own name and (alignment) extra lengths
    start = local + 30 + int.from_bytes(data[local + 26:local + 28], "little") + \
        int.from_bytes(data[local + 28:local + 30], "little")
    data[start:start + 16] = bytes(b ^ 0xFF for b in data[start:start + 16])
    path.write_bytes(bytes(data))
    finding = refused(path).finding  # torch itself would load the changed tensor silently
    assert (finding.code, finding.data["member"]) == ("YD508", member.filename)


@pytest.mark.parametrize("name", ["yolo11n-release-format.pt", "yolo11n-shapes-3ep-best.pt"])
def test_ultralytics_checkpoint_is_named_as_such(tmp_path, name):
    path = shared("golden", "ultralytics", "checkpoints", name)
    finding = refused(path).finding
    assert (finding.code, finding.name) == ("YD509", "foreign-checkpoint")
    assert finding.data == {"framework": "Ultralytics",
                            "model_class": "ultralytics.nn.tasks.DetectionModel"}
    assert ("not a YOLOv5 v7.0 checkpoint: an Ultralytics YOLOv8/YOLO11 checkpoint "
            "(ultralytics.nn.tasks.DetectionModel); yolodiag reads YOLOv5") in finding.message
    assert_one_line_exit_2(weights_cli(tmp_path, path), "YD509")


def test_yolov7_checkpoint_is_named_as_such(tmp_path):
    path = shared("golden", "yolov7", "checkpoints", "yolov7-tiny-stripped-format.pt")
    finding = refused(path).finding
    assert finding.code == "YD509" and finding.data["framework"] == "YOLOv7"
    assert "a YOLOv7 checkpoint (models.yolo.Model with IDetect, ImplicitA" in finding.message
    assert_one_line_exit_2(weights_cli(tmp_path, path), "YD509")


def test_yolov5_v6_checkpoint_pickling_model_is_still_read_as_yolov5(tmp_path):
    built = build(parse_spec(TINY, "tiny.yaml"))
    path = yolov5_layout(built.model, yaml.safe_load(TINY), tmp_path / "v6.pt",
                         top_class="Model")
    info = read_checkpoint(path)
    assert "models.yolo.Model" in info.globals and len(info.state) == len(
        built.model.state_dict())


def test_foreign_classes_beside_code_that_runs_are_refused_as_unsafe(tmp_path, monkeypatch):
    for name in ("ultralytics", "ultralytics.nn", "ultralytics.nn.tasks"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    model = type("DetectionModel", (), {"__module__": "ultralytics.nn.tasks"})
    sys.modules["ultralytics.nn.tasks"].DetectionModel = model
    alone = tmp_path / "ultralytics.pt"
    torch.save({"model": model(), "epoch": -1}, alone)
    assert refused(alone).finding.code == "YD509"
    marker = tmp_path / "ran"
    finding = refused(crafted(tmp_path / "evil.pt", marker, ema=model())).finding
    assert finding.code == "YD504" and "posix.system" in finding.data["globals"]
    assert not marker.exists()


def test_nano_checkpoint_on_the_s_recipe_is_one_width_mismatch():
    report = commands.weights(shared("yamls", "resnet18", "yolov5s-resnet18.yaml"),
                              shared(*NANO), nc=3)
    assert [f.code for f in report.findings] == ["YD510"]
    (mismatch,) = report.findings
    assert mismatch.severity == Severity.WARNING and report.exit_code == 0
    assert mismatch.data == {
        "checkpoint_width": 0.25, "cfg_width": 0.5, "transferred": 28, "total": 241,
        "counters": 25, "learnt_by_name": 125, "learnt_transferred": 0,
        "coincidental": ["model.24.m.0.bias", "model.24.m.1.bias", "model.24.m.2.bias"]}
    assert "nothing useful transferred: this is training from scratch" in mismatch.message
    assert mismatch.location.section == "width_multiple" and mismatch.location.line == 4


def test_s_checkpoint_on_the_nano_recipe_is_25_counters_and_nothing_else():
    report = commands.weights(shared("yamls", "resnet18", "yolov5n-resnet18.yaml"),
                              shared(*RELEASE), nc=3)
    (mismatch,) = report.findings
    assert mismatch.code == "YD510"
    assert (mismatch.data["transferred"], mismatch.data["total"]) == (25, 241)  # train.py's
    assert mismatch.data["counters"] == 25 and mismatch.data["coincidental"] == []
    assert "25 are BatchNorm num_batches_tracked counters and nothing else" in mismatch.message


def test_batchnorm_counters_make_no_layer_partly_transferred_or_learnt():
    info = read_checkpoint(shared(*NANO))
    moved = transfer(info, load_spec(shared("yamls", "resnet18", "yolov5s-resnet18.yaml")),
                     nc=3)
    counters = {k.layer for k in moved.keys if k.counter and k.status == "transferred"}
    assert counters and counters <= set(moved.random_layers()) | {24}
    assert moved.random_layers() == [i for i in sorted(moved.layers()) if i != 24]
    report = commands.weights(shared("yamls", "resnet18", "yolov5s-resnet18.yaml"),
                              shared(*RELEASE), nc=3)
    (misplaced,) = [f for f in report.findings if f.code == "YD503"]
    assert misplaced.severity == Severity.WARNING
    assert not any(k.endswith("num_batches_tracked") for k in misplaced.data["transferred"])
    assert "layer 0 Conv: 4 of 5 tensors transfer" in misplaced.message


def test_same_width_checkpoint_gives_no_width_mismatch():
    report = commands.weights(shared("yamls", "resnet18", "yolov5n-resnet18.yaml"),
                              shared(*NANO), nc=3)
    assert "YD510" not in [f.code for f in report.findings]
    assert report.sections["transfer"]["log"] == "Transferred 155/241 items"


def test_torch_files_that_are_no_yolov5_checkpoint_are_foreign_not_unsafe(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"epoch": 3, "weights": [1.0, 2.0]}, other)
    finding = refused(other).finding
    assert finding.code == "YD509" and "keys epoch, weights" in finding.message
    state = tmp_path / "state.pt"
    torch.save(build(parse_spec(TINY, "tiny.yaml")).model.state_dict(), state)
    report = commands.weights(write_yaml(tmp_path, TINY), state, cfg_given=False)
    assert report.refused.code == "YD509" and "a plain state dict" in report.refused.message
    assert report.exit_code == 2
