"""Checkpoints read without running them, train.py's transfer reproduced, finished runs read:
the golden checkpoints and transfer counts recorded from YOLOv5 v7.0, crafted pickles, the seed
recipe, the seed-stale run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from checkpoints import crafted, yolov5_layout
from conftest import TINY, shared, write_yaml
from yolodiag import commands
from yolodiag.build.builder import build
from yolodiag.cli import app
from yolodiag.dialects.yolov5.checkpoint import embedded_spec, read_checkpoint, transfer
from yolodiag.findings import Refused
from yolodiag.spec import load_spec, parse_spec

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ["yolov5s-release-format.pt", "yolov5n-midtrain-pkg.pt",
               "yolov5n-resnet18-repo.pt"]
SEED = ROOT / "yolodiag" / "dialects" / "yolov5" / "models" / "yolov5s-resnet18.yaml"


def codes(report) -> list[str]:
    return [f.code for f in report.findings]


BLOCKED_READ = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('yolov5', 'models', 'utils', 'ultralytics'):
            raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, Block())
from yolodiag.dialects.yolov5.checkpoint import read_checkpoint, embedded_spec
from yolodiag.build.builder import build
for path in sys.argv[1:]:
    info = read_checkpoint(path)
    ours = build(embedded_spec(info), nc=info.nc, device='meta').model.state_dict()
    assert list(ours) == list(info.state), path
    assert all(tuple(ours[k].shape) == tuple(info.state[k].shape) for k in ours), path
    print(path.rsplit('/', 1)[-1], info.layout, len(info.state), info.epoch)
assert not any(m.split('.')[0] in ('yolov5', 'models', 'ultralytics') for m in sys.modules)
"""


def test_golden_checkpoints_read_without_yolov5_match_our_builder():
    paths = [str(shared("golden", "checkpoints", name)) for name in CHECKPOINTS]
    out = subprocess.run([sys.executable, "-c", BLOCKED_READ, *paths], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == ["yolov5s-release-format.pt git checkout (models.yolo) 349 -1",
                     "yolov5n-midtrain-pkg.pt pip package (yolov5.models) 349 2",
                     "yolov5n-resnet18-repo.pt git checkout (models.yolo) 241 -1"]


def test_midtrain_checkpoint_keeps_its_training_facts():
    info = read_checkpoint(shared("golden", "checkpoints", "yolov5n-midtrain-pkg.pt"))
    assert info.has_optimizer and info.has_ema and info.half
    assert info.opt["epochs"] and info.nc == 3 and info.stride == [8.0, 16.0, 32.0]
    assert all(v.dtype != torch.float16 for v in info.state.values())  # .float(), as train.py


@pytest.mark.parametrize("how", ["os.system", "builtins.eval"])
def test_crafted_checkpoint_is_refused_naming_the_global_and_nothing_runs(tmp_path, how):
    marker = tmp_path / "ran"
    path = crafted(tmp_path / "evil.pt", marker, how)
    with pytest.raises(Refused) as refused:
        read_checkpoint(path)
    finding = refused.value.finding
    assert finding.code == "YD504"
    expected = "posix.system" if how == "os.system" else "builtins.eval"
    assert finding.data["globals"] == [expected] and expected in finding.message
    assert not marker.exists()
    result = runner.invoke(app, ["weights", str(write_yaml(tmp_path, TINY)), "--weights",
                                 str(path)])
    assert result.exit_code == 2 and "YD504" in result.stderr and not marker.exists()


def test_transfer_counts_equal_what_train_py_logged():
    golden = json.loads(shared("golden", "transfers.json").read_text())
    for scenario in golden["scenarios"]:
        info = read_checkpoint(shared("golden", scenario["weights"]))
        cfg = load_spec(shared("yamls", scenario["cfg"])) if scenario["cfg"] else None
        moved = transfer(info, cfg, nc=3)
        assert (moved.transferred, moved.total) == (scenario["transferred"],
                                                    scenario["total"]), scenario


def test_seed_recipe_leaves_the_backbone_random_and_misplaces_the_stem_batchnorm():
    weights = shared("golden", "checkpoints", "yolov5s-release-format.pt")
    report = commands.weights(SEED, weights, nc=3)
    found = {f.code: f for f in report.findings}
    assert found["YD502"].data == {"transferred": 149, "total": 241,
                                   "random_layers": list(range(1, 10))}
    assert found["YD503"].data["layer"] == 0
    assert "conv.weight 32x3x1x1 vs checkpoint 32x3x6x6" in found["YD503"].message
    assert report.sections["transfer"]["log"] == "Transferred 149/241 items"
    # warnings both (neither by itself keeps P and R at zero): exit 0 at --fail-on error
    assert report.exit_code == 0


def test_no_cfg_builds_the_checkpoint_yaml_and_shows_the_diff():
    weights = shared("golden", "checkpoints", "yolov5s-release-format.pt")
    report = commands.weights(SEED, weights, nc=3, cfg_given=False)
    (ignored,) = [f for f in report.findings if f.code == "YD501"]
    assert ignored.data["differing_layers"] == list(range(10))
    assert "built [-1, 1, Conv, [64, 6, 2, 2]]" in ignored.message
    assert report.sections["transfer"]["log"] == "Transferred 343/349 items"


def test_nonfinite_checkpoint_tensors_are_reported(tmp_path):
    spec = parse_spec(TINY, "tiny.yaml")
    built = build(spec)
    with torch.no_grad():
        built.model.model[3].conv.weight[0, 0, 0, 0] = float("inf")
    import yaml

    path = yolov5_layout(built.model, yaml.safe_load(TINY), tmp_path / "inf.pt")
    report = commands.weights(write_yaml(tmp_path, TINY), path)
    (bad,) = [f for f in report.findings if f.code == "YD505"]
    assert bad.data["keys"] == ["model.3.conv.weight"]
    assert report.sections["transfer"]["transferred"] == report.sections["transfer"]["total"] - 1


def test_our_yolov5_layout_checkpoint_round_trips(tmp_path):
    import yaml

    built = build(parse_spec(TINY, "tiny.yaml"))
    info = read_checkpoint(yolov5_layout(built.model, yaml.safe_load(TINY), tmp_path / "t.pt"))
    assert list(info.state) == list(built.model.state_dict())
    assert embedded_spec(info).nc == 2


def test_seed_stale_run_reports_zero_metrics_and_the_transfer_cause():
    run = shared("golden", "runs", "seed-stale")
    report = commands.run(run)
    (zero,) = [f for f in report.findings if f.code == "YD506"]
    assert zero.data["epochs"] == 4 and zero.data["best_map50"] < 0.003
    assert "--weights yolov5s.pt with --cfg models/yolov5s-resnet18.yaml" in zero.message
    # with the files it names found, the cause comes with train.py's own numbers
    report = commands.run(run, cfg=SEED,
                          weights=shared("golden", "checkpoints", "yolov5s-release-format.pt"),
                          nc=3)
    assert {"YD502", "YD503", "YD506"} <= set(codes(report))
    (zero,) = [f for f in report.findings if f.code == "YD506"]
    assert "transferred 149/241 items" in zero.message and "layers 1-9" in zero.message


def test_run_cli_plots_the_curves(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "run.png"
    result = runner.invoke(app, ["run", str(shared("golden", "runs", "seed-stale")), "--plot",
                                 str(plot)])
    assert result.exit_code == 1 and "YD506" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_with_weights_adds_the_transfer(tmp_path):
    weights = shared("golden", "checkpoints", "yolov5s-release-format.pt")
    result = runner.invoke(app, ["check", str(SEED), "--weights", str(weights), "--nc", "3",
                                 "-f", "json"])
    report = json.loads(result.stdout)
    assert report["transfer"]["transferred"] == 149
    assert {"YD301", "YD502", "YD503"} <= {f["code"] for f in report["findings"]}


def test_weights_and_run_json_follow_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "yolodiag" / "schemas" / "report.schema.json").read_text())
    weights = shared("golden", "checkpoints", "yolov5s-release-format.pt")
    for args in (["weights", str(SEED), "--weights", str(weights), "--nc", "3"],
                 ["run", str(shared("golden", "runs", "seed-stale"))]):
        result = runner.invoke(app, [*args, "-f", "json"])
        jsonschema.validate(json.loads(result.stdout), schema,
                            cls=jsonschema.Draft202012Validator)
