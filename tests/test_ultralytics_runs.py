"""`yolodiag run` on an Ultralytics run folder: the recorded 3-epoch yolo11n run of Ultralytics
8.4.190 (args.yaml, results.csv, its data YAML), and Ultralytics' reading of a data YAML's
`path:` (the working directory, then datasets_dir; the YAML's folder without one)."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import shared
from yolodiag import commands
from yolodiag.datapaths import locate
from yolodiag.dialects import choose_run
from yolodiag.dialects.ultralytics import datapaths, runs

RUN = shared("golden", "ultralytics", "runs", "yolo11n-shapes-3ep")
YOLO11N = shared("yamls", "ultralytics", "stock") / "yolo11n.yaml"


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Ultralytics' settings.json in a folder of the test's own, datasets_dir in it."""
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "config"))
    (tmp_path / "config" / "Ultralytics").mkdir(parents=True)
    (tmp_path / "datasets").mkdir()
    (tmp_path / "config" / "Ultralytics" / "settings.json").write_text(
        json.dumps({"datasets_dir": str(tmp_path / "datasets")}))
    return tmp_path / "datasets"


def test_results_csv_columns_are_read_under_the_names_the_checks_use():
    run = runs.read_run(RUN)
    assert run.epochs == 3 and run.best_map50 == 0.0 and run.losses_finite
    assert run.column("lr/pg0") == [0.0, 0.000478715, 0.00048586]
    assert run.cfg == "yolo11n.yaml" and run.weights == ""  # pretrained=True loads nothing
    assert choose_run(RUN).dialect.name == "ultralytics"


def test_the_recorded_run_took_one_optimiser_step_at_learning_rate_zero():
    report = commands.run(RUN, cfg=YOLO11N)
    (zero,) = [f for f in report.findings if f.code == "YD506"]
    assert zero.data["cause_kinds"][:2] == ["warmup", "scratch"]
    first = zero.data["causes"][0]
    # 16 images in one batch of 16: 3 iterations; warm-up min(3, epochs - 1) x 1 = 2; the
    # accumulation ramps 1 -> min(round(64 / 16), 3) = 3: one step, at iteration 0, lr 0
    assert "= 3 iterations" in first and "warm-up of 2 iterations: 1 optimiser step" in first
    assert "iteration 0 at lr 0," in first and "AdamW lr 0.001429" in first
    assert "the validation losses are the same in every epoch" in first
    assert "updated 1 time" in first and "nbs=16" in first
    assert "pretrained=True" in zero.data["causes"][1]
    assert zero.data["schedule"]["optimizer_steps"] == 1
    assert report.exit_code == 1


def test_a_stock_name_in_args_is_found_as_its_family_file(tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(RUN, folder)
    shutil.copy(shared("yamls", "ultralytics", "stock", "yolo11.yaml"), folder)
    run = runs.read_run(folder)
    runs.locate_inputs(run)
    assert run.cfg_path == folder / "yolo11n.yaml"  # read as yolo11.yaml at scale n


def test_relative_path_is_read_from_the_working_directory_when_it_exists(tmp_path, monkeypatch,
                                                                          settings):
    (tmp_path / "shapes" / "images" / "train").mkdir(parents=True)
    yaml = tmp_path / "elsewhere" / "data.yaml"
    yaml.parent.mkdir()
    monkeypatch.chdir(tmp_path)
    located = locate(yaml, {"path": "shapes", "train": "images/train"},
                     resolve_path=datapaths.resolve)
    assert located.yolov5_base == (tmp_path / "shapes").resolve()
    assert "from the working directory" in located.rule


def test_relative_path_not_in_the_working_directory_goes_under_datasets_dir(tmp_path,
                                                                            monkeypatch,
                                                                            settings):
    (settings / "shapes" / "images" / "train").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "config")
    located = locate(tmp_path / "data.yaml", {"path": "shapes", "train": "images/train"},
                     resolve_path=datapaths.resolve)
    assert located.yolov5_base == (settings / "shapes").resolve()
    assert located.entries["train"][0].target.is_dir() and not located.as_meant
    assert f"datasets_dir {settings}" in located.rule


def test_without_path_the_yaml_folder_is_the_root(tmp_path):
    base, rule = datapaths.resolve(tmp_path / "data.yaml", "")
    assert base == tmp_path.resolve() and "own folder" in rule


def test_a_run_with_pretrained_weights_has_its_transfer_simulated(tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(RUN, folder)
    release = shared("golden", "ultralytics", "checkpoints", "yolo11n-release-format.pt")
    args = (folder / "args.yaml").read_text().replace("pretrained: true",
                                                      f"pretrained: {release}")
    (folder / "args.yaml").write_text(args)
    report = commands.run(folder, cfg=YOLO11N)
    # the trainer's build for data=shapes: nc=3 and the data's names (none of them COCO's)
    assert report.sections["transfer"]["log"] == \
        "Transferred 493/499 items from pretrained weights"
    (zero,) = [f for f in report.findings if f.code == "YD506"]
    assert "transfer" in zero.data["cause_kinds"] and "scratch" not in zero.data["cause_kinds"]


def test_check_data_reads_an_ultralytics_yaml_by_its_rule(tmp_path, monkeypatch, settings):
    shutil.copytree(shared("golden", "data", "shapes"), settings / "shapes")
    data = tmp_path / "project" / "shapes.yaml"
    data.parent.mkdir()
    data.write_text("path: shapes\ntrain: images/train\nval: images/val\n"
                    "names:\n  0: red\n  1: green\n  2: blue\n")
    monkeypatch.chdir(tmp_path)  # no shapes/ here: Ultralytics takes datasets_dir/shapes
    report = commands.check(YOLO11N, data=data)
    assert report.sections["data"]["resolution"]["rule"].endswith(
        f"then under datasets_dir {settings} (from {settings.parent}/config/Ultralytics/"
        "settings.json)")
    assert "YD804" not in {f.code for f in report.findings}
    assert report.sections["data"]["splits"]["train"]["images"] == 16
    (settings / "shapes").rename(settings / "elsewhere")  # now it is found nowhere
    report = commands.check(YOLO11N, data=data)
    missing = [f for f in report.findings if f.code == "YD801"]  # found nowhere: no YD804
    assert len(missing) == 2 and all(f"under {settings / 'shapes'}" in f.message
                                     for f in missing)
    data.write_text(data.read_text().replace("path: shapes", "path: ."))  # beside the YAML
    shutil.copytree(settings / "elsewhere" / "images", data.parent / "images")
    shutil.copytree(settings / "elsewhere" / "labels", data.parent / "labels")
    report = commands.check(YOLO11N, data=data)
    # `.` exists from the working directory (tmp_path), which holds no images/: the YAML's
    # folder does, so the checks read it there and say what Ultralytics would do
    (misread,) = [f for f in report.findings if f.code == "YD804"]
    assert "resolves `path: .` from the working directory" in misread.message
