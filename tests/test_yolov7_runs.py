"""`yolodiag run` on YOLOv7 run folders: the two recorded train.py runs (golden/yolov7/runs, stock
yolov7-tiny and the resnet18 seed recipe, 3 epochs from scratch at 160 px on data/shapes) read
field by field from results.txt; the folder choosing the YOLOv7 dialect; the post-mortem on
each laid out as the YOLOv7 tree train.py ran in (the warm-up of 1000 iterations first, the cfg
checked as YOLOv7 reads it); YOLOv7's optimiser-step rule; refusals of a malformed results.txt."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from conftest import shared, validate
from yolodiag import commands
from yolodiag.cli import app
from yolodiag.dialects import DIALECTS, choose_run
from yolodiag.dialects.yolov7 import runs as yolov7_runs
from yolodiag.schedule import Schedule

runner = CliRunner()
RECORDED = ["tiny-scratch", "resnet18-scratch"]
# results.txt's fields in the order train.py writes them (golden README), as the checks name them.
FIELDS = ["epoch", "gpu_mem", "train/box_loss", "train/obj_loss", "train/cls_loss",
          "train/total_loss", "labels", "img_size", "metrics/precision", "metrics/recall",
          "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss", "val/obj_loss",
          "val/cls_loss"]


def recorded(name: str) -> Path:
    return shared("golden", "yolov7", "runs", name)


def recorded_cfg(name: str) -> Path:
    """The YAML the recorded run's opt.yaml names: cfg/training/... is YOLOv7's stock tree,
    resnet18/... the seed recipe (both under yamls/yolov7)."""
    written = Path(yaml.safe_load((recorded(name) / "opt.yaml").read_text())["cfg"])
    if written.parts[0] == "cfg":
        return shared("yamls", "yolov7", "stock", *written.parts[1:])
    return shared("yamls", "yolov7", *written.parts)


def lay_out_tree(root: Path, name: str) -> Path:
    """The YOLOv7 tree train.py ran in for the recorded run `name`: its cfg where opt.yaml
    names it, data/shapes-yolov7.yaml (splits relative to the tree, no `path:`) over a copy of
    data/shapes, and the run folder at opt.yaml's save_dir. Returns the run folder."""
    opt = yaml.safe_load((recorded(name) / "opt.yaml").read_text())
    cfg = root / opt["cfg"]
    cfg.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(recorded_cfg(name), cfg)
    shutil.copytree(shared("golden", "data", "shapes"), root / "data" / "shapes",
                    ignore=shutil.ignore_patterns("*.yaml"))
    shutil.copy(recorded("tiny-scratch") / "shapes-yolov7.yaml", root / opt["data"])
    run = root / opt["save_dir"]
    shutil.copytree(recorded(name), run)
    return run


def logged_metrics(name: str) -> list[list[float]]:
    """P, R, mAP@.5, mAP@.5:.95 of each epoch's `all` line in the recorded console log."""
    lines = (recorded(name) / "train-log-excerpt.txt").read_text().splitlines()
    return [[float(v) for v in line.split()[3:7]] for line in lines
            if line.split()[:1] == ["all"]]


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict:
    """commands.run on each recorded run laid out in its tree, with cfg= given."""
    out = {}
    for name in RECORDED:
        run = lay_out_tree(tmp_path_factory.mktemp(name), name)
        out[name] = commands.run(run, cfg=run.parents[2] / yaml.safe_load(
            (run / "opt.yaml").read_text())["cfg"])
    return out


@pytest.mark.parametrize("name", RECORDED)
def test_every_results_txt_field_is_read_under_the_checks_column_names(name):
    run = yolov7_runs.read_run(recorded(name))
    lines = (recorded(name) / "results.txt").read_text().split("\n")
    written = [line.split() for line in lines if line.strip()]
    assert run.results == "ok" and run.epochs == len(written) == 3
    for row, fields in zip(run.rows, written):
        assert list(row) == FIELDS
        assert row["epoch"] == int(fields[0].split("/")[0])
        assert row["gpu_mem"] == float(fields[1].rstrip("G"))
        assert [row[k] for k in FIELDS[2:]] == [float(v) for v in fields[2:]]
    assert run.imgsz == 160 and run.weights == "" and run.hyp["warmup_epochs"] == 3.0


@pytest.mark.parametrize("name, best", [("tiny-scratch", (0.004002, 0.5909, 0.004756)),
                                        ("resnet18-scratch", (0.001881, 0.2273, 0.001463))])
def test_best_precision_recall_map_are_the_columns_maxima_and_match_the_log(name, best):
    run = yolov7_runs.read_run(recorded(name))
    assert (run.best_precision, run.best_recall, run.best_map50) == best
    logged = logged_metrics(name)
    assert len(logged) == run.epochs
    for row, (p, r, map50, map_all) in zip(run.rows, logged):  # the log rounds to 3 digits
        assert row["metrics/precision"] == pytest.approx(p, rel=5e-3)
        assert row["metrics/recall"] == pytest.approx(r, rel=5e-3)
        assert row["metrics/mAP_0.5"] == pytest.approx(map50, rel=5e-3)
        assert row["metrics/mAP_0.5:0.95"] == pytest.approx(map_all, rel=5e-3)


def test_folders_choose_their_dialect_by_the_files_train_py_wrote(tmp_path):
    for name in RECORDED:
        assert choose_run(recorded(name)).dialect.name == "yolov7"
    assert choose_run(Path(__file__).parent / "data" / "runs" / "seed-pretrained") \
        .dialect.name == "yolov5"
    (tmp_path / "opt.yaml").write_text("cfg: a.yaml\nimg_size: [640, 640]\n")
    chosen = choose_run(tmp_path)  # no epoch yet: opt.yaml's keys decide
    assert chosen.dialect.name == "yolov7" and "img_size" in chosen.reason
    assert choose_run(recorded("tiny-scratch"), "yolov5").dialect.name == "yolov5"


def test_yolov7_steps_on_every_multiple_of_the_accumulation_after_1000_warmup_iterations():
    def direct(iterations: int, warmup: int, batch: int) -> int:
        """train.py a207844's rule, iteration by iteration."""
        accumulate, steps = max(round(64 / batch), 1), 0
        for ni in range(iterations):
            if ni <= warmup:
                accumulate = max(1, round(float(np.interp(ni, [0, warmup], [1, 64 / batch]))))
            steps += ni % accumulate == 0
        return steps

    layout = yolov7_runs.LAYOUT
    # Every train split here holds at least a batch (train.py accumulates by the requested one).
    for images, batch, epochs in [(16, 8, 3), (16, 8, 800), (1000, 16, 40), (5000, 64, 4),
                                  (37, 3, 120)]:
        plan = Schedule(images, batch, 3.0, epochs, min_warmup=layout.min_warmup,
                        steps_on_multiples=layout.steps_on_multiples)
        assert plan.warmup_iterations == max(round(3 * plan.batches_per_epoch), 1000)
        assert plan.optimizer_steps == direct(plan.iterations, plan.warmup_iterations,
                                              plan.batch_size)


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_runs_ended_inside_the_1000_iteration_warmup_and_say_so_first(reports, name):
    report = reports[name]
    run = report.sections["run"]
    assert run["schedule"]["iterations"] == 6 and run["schedule"]["warmup_iterations"] == 1000
    assert run["schedule"]["optimizer_steps"] == 6 and run["schedule"]["ended_in_warmup"]
    assert run["nc"] == 3 and run["imgsz"] == 160
    (zero,) = [f for f in report.findings if f.code == "YD506"]
    assert zero.data["cause_kinds"][:2] == ["warmup", "scratch"]
    assert "1000 iterations" in zero.data["causes"][0]
    assert zero.location.file.endswith("results.txt")
    assert report.sections["dialect"]["name"] == "yolov7" and report.exit_code == 1


def test_tiny_run_has_no_cfg_findings_and_blames_the_p5_hyp(reports):
    report = reports["tiny-scratch"]
    assert {f.code for f in report.findings} == {"YD506"}
    (zero,) = report.findings
    assert "cfg" not in zero.data["cause_kinds"] and "hyp" in zero.data["cause_kinds"]


def test_resnet18_run_checks_its_cfg_as_yolov7_check_does(reports):
    report = reports["resnet18-scratch"]
    checked = commands.check(recorded_cfg("resnet18-scratch"), ((160, 160),), nc=3)
    assert sorted(f.code for f in checked.findings) == ["YD110", "YD204", "YD204", "YD301"]
    assert sorted(f.code for f in report.findings) == sorted(
        [f.code for f in checked.findings] + ["YD506"])
    (stride,) = [f for f in report.findings if f.code == "YD301"]
    assert "strides are 4/8/16" in stride.message
    (zero,) = [f for f in report.findings if f.code == "YD506"]
    assert "warnings YD204 x2, YD301" in zero.data["causes"][zero.data["cause_kinds"]
                                                             .index("cfg")]


def test_run_json_follows_the_schema(reports, tmp_path):
    run = lay_out_tree(tmp_path, "resnet18-scratch")
    result = runner.invoke(app, ["run", str(run), "-f", "json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    validate(report)
    assert report["run"]["results"][2]["metrics/recall"] == 0.2273


@pytest.mark.parametrize("line, says", [
    ("       0/2        0G    0.0808  0.001284   0.02285\n", "5 fields"),
    ("       0/2        0G    0.0808  0.001284   0.02285    0.1049        25       160  "
     "0.001377    0.1439 0.0007633 0.0002009    0.1031  0.002568    abc\n", "'abc', not a number"),
    ("         0        0G    0.0808  0.001284   0.02285    0.1049        25       160  "
     "0.001377    0.1439 0.0007633 0.0002009    0.1031  0.002568    0.0224\n", "epoch/last"),
])
def test_malformed_results_txt_is_a_one_line_refusal_naming_its_line(tmp_path, line, says):
    run = tmp_path / "exp"
    shutil.copytree(recorded("tiny-scratch"), run)
    results = run / "results.txt"
    results.write_text(results.read_text() + line)
    result = runner.invoke(app, ["run", str(run)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert f"{results}:4: " in result.stderr and says in result.stderr


@pytest.mark.parametrize("content", ["", None])
def test_run_without_a_finished_epoch_is_yd507_naming_results_txt(tmp_path, content):
    run = lay_out_tree(tmp_path, "tiny-scratch")
    if content is None:
        (run / "results.txt").unlink()
    else:
        (run / "results.txt").write_text(content)
    report = commands.run(run)
    assert {f.code for f in report.findings} == {"YD507"} and report.exit_code == 1
    (stopped,) = report.findings
    state = "no results.txt" if content is None else "an empty results.txt"
    assert stopped.message.startswith(state) and "forward runs at 160" in stopped.message


def test_weights_without_a_checkpoint_reader_skip_the_transfer_in_one_cause(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setitem(DIALECTS, "yolov7", dataclasses.replace(DIALECTS["yolov7"],
                                                                checkpoint=None))
    run = lay_out_tree(tmp_path, "resnet18-scratch")
    opt = yaml.safe_load((run / "opt.yaml").read_text())
    (run / "opt.yaml").write_text(yaml.safe_dump({**opt, "weights": "yolov7-tiny.pt"}))
    (tmp_path / "yolov7-tiny.pt").write_bytes(b"not read")
    report = commands.run(run)
    assert report.sections["transfer"] is None and report.exit_code == 1
    (zero,) = [f for f in report.findings if f.code == "YD506"]
    (transfer,) = [t for k, t in zip(zero.data["cause_kinds"], zero.data["causes"])
                   if k == "transfer"]
    assert "not simulated: yolodiag reads no YOLOv7 checkpoints yet" in transfer


def test_data_yaml_path_key_is_ignored_as_yolov7_ignores_it(tmp_path):
    run = lay_out_tree(tmp_path, "tiny-scratch")
    data = tmp_path / "data" / "shapes-yolov7.yaml"
    data.write_text("path: /nowhere\n" + data.read_text())
    report = commands.run(run)
    assert report.sections["run"]["schedule"]["train_images"] == 16  # found under the tree
    (zero,) = [f for f in report.findings if f.code == "YD506"]
    assert any("`path: /nowhere`, which YOLOv7's train.py does not read" in cause
               for cause in zero.data["causes"])
