"""YOLOv7 checkpoints read without running them, and YOLOv7's train.py `--weights` reproduced:
the transfer counts it logged (shared/golden/yolov7/transfers.json) from the stripped
yolov7-tiny checkpoint, the optimizer groups its runs logged, a per-epoch checkpoint stopping
train.py at the optimizer load, the allow-list, and which dialect reads a checkpoint."""

from __future__ import annotations

import json
import re
import sys
import types

import pytest
from typer.testing import CliRunner

from checkpoints import crafted, yolov7_tiny_per_epoch
from conftest import shared, validate
from yolodiag import commands
from yolodiag.build.builder import build
from yolodiag.cli import app
from yolodiag.dialects import choose_checkpoint
from yolodiag.dialects.yolov7.checkpoint import (
    PARAMETER_GROUP_ERROR,
    embedded_spec,
    optimizer_groups,
    read_checkpoint,
    transfer,
)
from yolodiag.findings import Refused
from yolodiag.spec import load_spec

runner = CliRunner()
STRIPPED = ("golden", "yolov7", "checkpoints", "yolov7-tiny-stripped-format.pt")
TINY = ("yamls", "yolov7", "stock", "training", "yolov7-tiny.yaml")
RECIPE = ("yamls", "yolov7", "resnet18", "yolov7-tiny-resnet18.yaml")
SCENARIOS = [s for s in json.loads(shared("golden", "yolov7", "transfers.json").read_text())
             ["scenarios"] if s["weights"] == "/".join(STRIPPED)]


def codes(report) -> list[str]:
    return [f.code for f in report.findings]


def refused(path) -> Refused:
    with pytest.raises(Refused) as caught:
        read_checkpoint(path)
    return caught.value


def logged_groups(run: str) -> tuple[int, int, int]:
    """train.py's `Optimizer groups: B .bias, W conv.weight, O other`, in its group order."""
    log = shared("golden", "yolov7", "runs", run, "train-log-excerpt.txt").read_text()
    biases, weights, other = map(int, re.search(
        r"Optimizer groups: (\d+) \.bias, (\d+) conv\.weight, (\d+) other", log).groups())
    return other, weights, biases


def test_stripped_checkpoint_reads_as_a_finished_runs_last_pt_and_matches_our_build():
    info = read_checkpoint(shared(*STRIPPED))
    assert (info.layout, info.epoch, info.nc, info.half) == (
        "YOLOv7 checkout (models.yolo)", -1, 80, True)
    assert not info.has_optimizer and not info.has_ema and info.stride == [8.0, 16.0, 32.0]
    ours = build(embedded_spec(info), nc=info.nc, device="meta").model.state_dict()
    assert list(ours) == list(info.state) and len(ours) == 344
    assert all(tuple(ours[k].shape) == tuple(info.state[k].shape) for k in ours)
    assert "models" not in sys.modules  # nothing of YOLOv7 was imported, nor needed


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s["cfg"] or "no-cfg")
def test_transfer_counts_equal_what_train_py_logged(scenario):
    cfg = load_spec(shared(scenario["cfg"])) if scenario["cfg"] else None
    moved = transfer(read_checkpoint(shared(*STRIPPED)), cfg, nc=3)
    assert (moved.transferred, moved.total) == (scenario["transferred"], scenario["total"])
    done = [k for k in moved.keys if k.status == "transferred"]
    if "num_batches_tracked_items" in scenario:
        assert sum(k.counter for k in done) == scenario["num_batches_tracked_items"]
        assert sum(not k.counter for k in done) == scenario["real_tensor_items"]
    excluded = [k.key.rpartition(".")[2] for k in moved.keys if k.status == "excluded"]
    assert excluded == ([] if cfg is None else ["anchors", "anchor_grid"])
    assert moved.state_loads == []  # stripped: no optimizer, no EMA to load


def test_seed_recipe_from_the_tiny_checkpoint_leaves_the_backbone_random():
    report = commands.weights(shared(*RECIPE), shared(*STRIPPED), nc=3)
    assert report.sections["transfer"]["log"] == "Transferred 44/362 items"
    assert report.sections["checkpoint"]["layout"] == "YOLOv7 checkout (models.yolo)"
    found = {f.code: f for f in report.findings}
    assert found["YD502"].data["transferred"] == 44 and 1 in found["YD502"].data["random_layers"]
    assert "YD511" not in found and report.exit_code in (0, 1)


def test_without_cfg_the_checkpoint_is_read_as_yolov7_even_beside_a_yolov5_yaml():
    """--dialect auto, no --cfg: the pickle's classes choose YOLOv7, whatever the YAML is."""
    chosen = choose_checkpoint(shared(*STRIPPED))
    assert chosen.dialect.name == "yolov7" and "IDetect" in chosen.reason
    report = commands.weights(None, shared(*STRIPPED), nc=3, cfg_given=False)
    assert report.sections["transfer"]["log"] == "Transferred 335/344 items"
    assert "YD501" in codes(report) and report.exit_code == 1
    own = commands.weights(shared(*TINY), shared(*STRIPPED), nc=3, cfg_given=False)
    assert own.sections["transfer"]["transferred"] == 335
    (ignored,) = [f for f in own.findings if f.code == "YD501"]
    assert ignored.data["differing_layers"] == []  # the YAML is the checkpoint's own


def test_forced_yolov5_still_names_it_a_yolov7_checkpoint():
    report = commands.weights(None, shared(*STRIPPED), cfg_given=False, dialect="yolov5")
    (foreign,) = [f for f in report.findings if f.code == "YD509"]
    assert foreign.data["framework"] == "YOLOv7" and report.exit_code == 2
    assert choose_checkpoint(shared("golden", "checkpoints", "yolov5s-release-format.pt")
                             ).dialect.name == "yolov5"


def test_yolov5_checkpoint_with_a_yolov7_cfg_is_foreign():
    finding = refused(shared("golden", "checkpoints", "yolov5s-release-format.pt")).finding
    assert finding.code == "YD509"
    assert finding.data == {"framework": "YOLOv5", "model_class": "models.yolo.DetectionModel"}
    result = runner.invoke(app, ["weights", str(shared(*TINY)), "--weights", str(
        shared("golden", "checkpoints", "yolov5s-release-format.pt"))])
    assert result.exit_code == 2 and "YD509" in result.stderr


def test_optimizer_groups_equal_what_train_py_logged():
    for run, yaml in (("tiny-scratch", TINY), ("resnet18-scratch", RECIPE)):
        model = build(load_spec(shared(*yaml)), nc=3, device="meta").model
        assert optimizer_groups(model) == logged_groups(run), run


def test_per_epoch_checkpoint_into_another_architecture_stops_at_the_optimizer(tmp_path):
    """transfers.json's two epoch_002.pt scenarios: tiny -> tiny 342/344 and it trains; the
    seed recipe 44/362, then train.py's ValueError loading the optimizer."""
    epoch = yolov7_tiny_per_epoch(tmp_path / "epoch_002.pt")
    info = read_checkpoint(epoch)
    assert info.has_optimizer and info.has_ema and info.optimizer_groups == logged_groups(
        "tiny-scratch")
    same = commands.weights(shared(*TINY), epoch, nc=3)
    assert same.sections["transfer"]["log"] == "Transferred 342/344 items"
    assert "YD511" not in codes(same)
    assert [s["error"] for s in same.sections["transfer"]["state_loads"]] == [None, None]
    other = commands.weights(shared(*RECIPE), epoch, nc=3)
    assert other.sections["transfer"]["log"] == "Transferred 44/362 items"
    (stops,) = [f for f in other.findings if f.code == "YD511"]
    assert stops.data["part"] == "optimizer" and stops.data["error"] == PARAMETER_GROUP_ERROR
    assert "61, 58, 58" in stops.data["saved"] and "64, 61, 61" in stops.data["needed"]
    assert other.exit_code == 1
    result = runner.invoke(app, ["weights", str(shared(*RECIPE)), "--weights", str(epoch),
                                 "--nc", "3", "-f", "json"])
    assert result.exit_code == 1
    validate(json.loads(result.stdout))


@pytest.fixture
def yolov7_classes(monkeypatch):
    """Stand-ins named models.yolo.Model and models.yolo.IDetect, as a YOLOv7 tree pickles."""
    for name in ("models", "models.yolo", "models.common"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    made = {}
    for module, name in (("models.yolo", "Model"), ("models.yolo", "IDetect"),
                         ("models.common", "Evil")):
        made[name] = type(name, (), {"__module__": module})
        setattr(sys.modules[module], name, made[name])
    return made


def test_yolov7_checkpoint_carrying_code_is_refused_and_nothing_runs(tmp_path, yolov7_classes):
    marker = tmp_path / "ran"
    path = crafted(tmp_path / "evil.pt", marker, ema=yolov7_classes["Model"](),
                   head=yolov7_classes["IDetect"]())
    finding = refused(path).finding
    assert finding.code == "YD504" and finding.data["globals"] == ["posix.system"]
    assert choose_checkpoint(path).dialect.name == "yolov7"
    for cfg_given in (True, False):
        result = runner.invoke(app, ["weights", str(shared(*TINY)), "--weights", str(path),
                                     "--cfg-given" if cfg_given else "--no-cfg"])
        assert result.exit_code == 2 and "YD504" in result.stderr
    assert not marker.exists()


def test_allow_list_holds_only_yolov7s_own_classes(tmp_path, yolov7_classes):
    import torch

    path = tmp_path / "other.pt"
    torch.save({"model": yolov7_classes["Model"](), "x": yolov7_classes["Evil"]()}, path)
    finding = refused(path).finding
    assert finding.code == "YD504" and finding.data["globals"] == ["models.common.Evil"]
