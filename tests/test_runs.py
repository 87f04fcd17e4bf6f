"""`yolodiag run` on real train.py run folders (tests/data/runs, recorded from YOLOv5 v7.0), each
laid out in a YOLOv5 checkout as train.py left it: the class count from the run's data YAML,
findings in the cfg's lines, the iterations against the warm-up as the first cause, runs that
stopped before their first epoch, and the folders and files that are not there."""

from __future__ import annotations

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
from yolodiag.schedule import Schedule, schedule
from yolodiag.spec import load_spec

runner = CliRunner()
RUNS = Path(__file__).parent / "data" / "runs"


def lay_out_checkout(root: Path, name: str) -> Path:
    """The YOLOv5 checkout train.py ran in for the recorded run `name`: its cfg under models/,
    data/shapes.yaml with an absolute `path:` to a copy of the shapes images, yolov5s.pt in the
    root, and the run folder at opt.yaml's save_dir. Returns the run folder."""
    opt = yaml.safe_load((RUNS / name / "opt.yaml").read_text())
    cfg = root / opt["cfg"]
    cfg.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared("yamls", "resnet18", cfg.name), cfg)
    dataset = root / "datasets" / "shapes"
    if not dataset.exists():
        shutil.copytree(shared("golden", "data", "shapes"), dataset,
                        ignore=shutil.ignore_patterns("*.yaml"))
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "shapes.yaml").write_text(
        f"path: {json.dumps(str(dataset))}\ntrain: images/train\nval: images/val\nnc: 3\n"
        "names: ['red', 'green', 'blue']\n")
    if opt["weights"]:
        shutil.copy(shared("golden", "checkpoints", "yolov5s-release-format.pt"),
                    root / opt["weights"])
    run = root / opt["save_dir"]
    shutil.copytree(RUNS / name, run)
    return run


def logged_transfer(name: str) -> tuple[int, int] | None:
    """(X, Y) of the run's `Transferred X/Y items` console line, None for a scratch run."""
    log = RUNS / name / "train.log"
    if not log.exists():
        return None
    done, total = log.read_text().split()[1].split("/")
    return int(done), int(total)


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory) -> Path:
    return lay_out_checkout(tmp_path_factory.mktemp("yolov5"), "seed-pretrained")


@pytest.fixture(scope="module")
def seed_report(seed_run):
    return commands.run(seed_run)


def cli_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["run", *args, "-f", "json"])
    return result.exit_code, json.loads(result.stdout)


def test_seed_pretrained_transfers_149_of_241_with_the_data_yaml_names(seed_report):
    transfer = seed_report.sections["transfer"]
    assert (transfer["transferred"], transfer["total"]) == logged_transfer("seed-pretrained")
    assert (transfer["transferred"], transfer["total"]) == (149, 241)
    run = seed_report.sections["run"]
    assert run["nc"] == 3 and run["nc_source"].startswith("the names of")
    assert run["data_path"].endswith("data/shapes.yaml") and run["data_note"] == ""


def test_seed_pretrained_cfg_findings_are_located_in_the_cfg_lines(seed_report, seed_run):
    cfg = seed_run.parents[2] / "models" / "yolov5s-resnet18.yaml"
    spec = load_spec(cfg)
    by_code = {f.code: f for f in seed_report.findings}
    assert {"YD301", "YD204", "YD502", "YD503", "YD506"} <= set(by_code)
    for f in seed_report.findings:
        if f.code == "YD506":
            assert Path(f.location.file) == seed_run / "results.csv"
            continue
        assert Path(f.location.file).resolve() == cfg.resolve(), f.code
        if f.location.layer is not None:
            assert f.location.line == spec.layers[f.location.layer].line, f.code
    assert by_code["YD301"].location.line == spec.layers[24].line


def test_github_annotations_point_at_the_cfg_not_the_run_folder(seed_run):
    result = runner.invoke(app, ["run", str(seed_run), "-f", "github"])
    assert result.exit_code == 1
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    cfg = str((seed_run.parents[2] / "models" / "yolov5s-resnet18.yaml").resolve())
    files = [line.split("file=", 1)[1].split(",", 1)[0] for line in annotations]
    assert files.count(str(seed_run / "results.csv")) == 1  # YD506 only
    assert all(f == cfg for f in files if not f.endswith("results.csv"))
    assert any(f"file={cfg},line=" in line and "YD301" in line for line in annotations)


def test_iterations_against_the_warmup_are_the_first_cause(seed_report):
    (zero,) = [f for f in seed_report.findings if f.code == "YD506"]
    assert zero.data["cause_kinds"][:4] == ["warmup", "scratch", "cfg", "transfer"]
    assert zero.data["causes"][0].startswith("the whole run was warm-up")
    assert "YD301" in zero.data["causes"][2]
    plan = seed_report.sections["run"]["schedule"]
    assert plan == {"train_images": 16, "batch_size": 8, "batches_per_epoch": 2,
                    "warmup_epochs": 3.0, "warmup_iterations": 100, "epochs_done": 3,
                    "iterations": 6, "optimizer_steps": 6, "ended_in_warmup": True}
    assert "x/lr1 peaked at 0.000201" in zero.message


def test_run_report_text_states_the_iterations_and_the_class_count(seed_run):
    result = runner.invoke(app, ["run", str(seed_run)], terminal_width=200)
    assert result.exit_code == 1
    assert "nc=3 from the names of" in result.stdout
    assert "3 epochs = 6 iterations (6 optimiser steps)" in result.stdout
    assert "warm-up lasts 100 iterations: the run ended inside it" in result.stdout


def test_run_json_carries_the_schedule_and_follows_the_schema(seed_run):
    code, report = cli_json(str(seed_run))
    assert code == 1 and report["run"]["schedule"]["warmup_iterations"] == 100
    validate(report)


@pytest.mark.parametrize("name", ["seed-scratch", "fixed-scratch", "fixed-pretrained",
                                  "nano-from-s"])
def test_recorded_runs_give_their_logged_transfer_and_warmup_first(tmp_path, name):
    report = commands.run(lay_out_checkout(tmp_path, name))
    transfer = report.sections["transfer"]
    logged = logged_transfer(name)
    assert (transfer and (transfer["transferred"], transfer["total"])) == logged
    (zero,) = [f for f in report.findings if f.code == "YD506"]
    kinds = zero.data["cause_kinds"]
    assert kinds[:2] == ["warmup", "scratch"]
    assert ("transfer" in kinds) == (logged is not None)
    # the fixed recipe has no errors or warnings of its own; the seed's and nano's have YD301
    assert ("cfg" in kinds) == ("fixed" not in name)
    # a yolov5s checkpoint under the nano recipe: one cause, the width, as YD510 says
    assert ("nothing useful transferred (YD510)" in zero.message) == (name == "nano-from-s")


def test_nc_option_wins_over_the_data(seed_run):
    report = commands.run(seed_run, nc=80)
    assert report.sections["transfer"]["transferred"] == 155
    assert report.sections["run"]["nc_source"] == "--nc"


def test_missing_data_yaml_falls_back_to_the_cfg_nc_and_says_so(tmp_path):
    run = lay_out_checkout(tmp_path, "seed-pretrained")
    (tmp_path / "data" / "shapes.yaml").unlink()
    code, report = cli_json(str(run))
    assert code == 1
    assert report["run"]["nc"] == 80 and report["run"]["nc_source"].startswith("the cfg's nc")
    assert "not found" in report["run"]["data_note"]
    assert report["transfer"]["transferred"] == 155  # what the cfg's nc=80 gives
    (zero,) = [f for f in report["findings"] if f["code"] == "YD506"]
    assert zero["data"]["cause_kinds"][0] == "warmup"  # 100 iterations at least, 3 epochs
    assert "data/shapes.yaml was not read" in zero["message"]


@pytest.mark.parametrize("content", ["", None, "header"])
def test_run_that_stopped_before_its_first_epoch_is_yd507_exit_1(seed_run, tmp_path, content):
    run = tmp_path / "runs" / "train" / "stopped"
    shutil.copytree(seed_run, run)
    results = run / "results.csv"
    header = results.read_text().splitlines()[0]
    if content is None:
        results.unlink()
    else:
        results.write_text(header + "\n" if content == "header" else "")
    result = runner.invoke(app, ["run", str(run), "--cfg", str(seed_run.parents[2] / "models" /
                                                               "yolov5s-resnet18.yaml")])
    assert result.exit_code == 1
    assert "YD507" in result.stdout and "YD506" not in result.stdout
    assert "stopped before the first epoch finished" in result.stdout
    assert "the cfg's forward runs at 160 here" in result.stdout  # the seed does not crash


def test_incomplete_run_names_the_layer_its_cfg_crashes_in(seed_run, tmp_path):
    run = tmp_path / "runs" / "train" / "crashed"
    shutil.copytree(seed_run, run)
    header = (run / "results.csv").read_text().splitlines()[0]
    (run / "results.csv").write_text(header + "\n")
    concat_mismatch = Path(__file__).parent / "examples" / "YD303" / "bad.yaml"
    code, report = cli_json(str(run), "--cfg", str(concat_mismatch))
    assert code == 1
    (stopped,) = [f for f in report["findings"] if f["code"] == "YD507"]
    assert stopped["data"]["cfg_crashes"] == [{"layer": 6, "code": "YD303"}]
    assert "YD303" in {f["code"] for f in report["findings"]}


def test_folder_without_opt_yaml_and_missing_folder_are_two_different_errors(tmp_path):
    (tmp_path / "results.csv").write_text("epoch\n")
    no_opt = runner.invoke(app, ["run", str(tmp_path)])
    missing = runner.invoke(app, ["run", str(tmp_path / "nothere")])
    assert no_opt.exit_code == missing.exit_code == 2
    assert "no opt.yaml" in no_opt.stderr and "no such folder" in missing.stderr
    assert len(no_opt.stderr.strip().splitlines()) == len(missing.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("option,name", [("--weights", "nothere.pt"), ("--cfg", "nothere.yaml")])
def test_missing_weights_or_cfg_option_is_a_usage_error(seed_run, option, name):
    result = runner.invoke(app, ["run", str(seed_run), option, name])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"yolodiag: {option} {name}: no such file"


def test_run_past_its_warmup_does_not_blame_the_warmup(tmp_path):
    run = lay_out_checkout(tmp_path, "seed-scratch")
    header, *rows = (run / "results.csv").read_text().splitlines()
    last = rows[-1].split(",", 1)[1]
    (run / "results.csv").write_text("\n".join([header, *(f"{i:>20},{last}"
                                                          for i in range(150))]) + "\n")
    report = commands.run(run)
    (zero,) = [f for f in report.findings if f.code == "YD506"]
    assert report.sections["run"]["schedule"]["iterations"] == 300
    assert zero.data["cause_kinds"][0] == "scratch" and "warmup" not in zero.data["cause_kinds"]
    assert "trained 150 epochs" in zero.data["causes"][0]


def test_unreadable_opt_yaml_is_one_line_naming_its_line(tmp_path):
    (tmp_path / "opt.yaml").write_text("weights: yolov5s.pt\ncfg: [unclosed\n")
    result = runner.invoke(app, ["run", str(tmp_path)])
    assert result.exit_code == 2 and f"{tmp_path / 'opt.yaml'}:3" in result.stderr


def direct_optimizer_steps(iterations: int, warmup: int, batch: int) -> int:
    """train.py v7.0's optimiser-step rule, iteration by iteration."""
    accumulate, last, steps = max(round(64 / batch), 1), -1, 0
    for ni in range(iterations):
        if ni <= warmup:
            accumulate = max(1, round(float(np.interp(ni, [0, warmup], [1, 64 / batch]))))
        if ni - last >= accumulate:
            steps, last = steps + 1, ni
    return steps


@pytest.mark.parametrize("images,batch,epochs", [(16, 8, 3), (16, 8, 300), (1000, 16, 7),
                                                 (5000, 64, 4), (37, 3, 50), (10, 32, 20)])
def test_optimizer_steps_follow_train_py_accumulation(images, batch, epochs):
    plan = Schedule(images, batch, 3.0, epochs)
    assert plan.optimizer_steps == direct_optimizer_steps(plan.iterations,
                                                          plan.warmup_iterations,
                                                          plan.batch_size)
    assert len(plan.step_iterations()) == plan.optimizer_steps


@pytest.mark.parametrize("images,batch,epochs,accumulate", [(16, 16, 3, 3), (16, 16, 100, 4),
                                                            (1000, 16, 7, 4), (37, 3, 50, 21)])
def test_a_rounded_capped_accumulation_counts_the_same_steps_both_ways(images, batch, epochs,
                                                                       accumulate):
    """Ultralytics ramps to max(round(nbs / batch), 1) capped at the run's iterations, with no
    warm-up floor: the closed form and the step-by-step list agree there too."""
    plan = Schedule(images, batch, min(3.0, epochs - 1), epochs, min_warmup=0,
                    accumulate_to=accumulate)
    assert len(plan.step_iterations()) == plan.optimizer_steps


def test_ultralytics_recorded_run_steps_once_at_iteration_zero():
    plan = Schedule(16, 16, 2.0, 3, min_warmup=0, accumulate_to=3)
    assert (plan.warmup_iterations, plan.iterations, plan.step_iterations()) == (2, 3, [0])


def test_schedule_batches_warmup_and_unknowns():
    plan = Schedule(1000, 16, 3.0, 2)
    assert (plan.batches_per_epoch, plan.warmup_iterations, plan.iterations) == (63, 189, 126)
    assert plan.ended_in_warmup
    assert Schedule(10, 32, 3.0, 1).batch_size == 10  # the loader's batch is at most the images
    assert schedule(None, 8, 3.0, 3) is None and schedule(16, -1, 3.0, 3) is None


@pytest.mark.parametrize("name, best", [("seed-scratch-100", 0.096), ("fixed-scratch-100", 0.035)])
def test_real_100_epoch_runs_past_the_warmup_are_not_called_zero(tmp_path, name, best):
    """Both recipes trained 100 epochs from scratch (200 iterations, twice the warm-up) leave
    mAP@0.5 above YD506's mark: the seed's 4/8/16 strides do not keep it at zero."""
    report = commands.run(lay_out_checkout(tmp_path, name))
    run = report.sections["run"]
    assert run["best_map50"] == pytest.approx(best, abs=5e-4)
    assert run["schedule"]["iterations"] == 200 and not run["schedule"]["ended_in_warmup"]
    assert "YD506" not in {f.code for f in report.findings}
