"""--data paths as YOLOv5 v7.0's check_dataset resolves them (a relative `path:` against the
YOLOv5 root, YD804 where the user meant the data YAML's folder, Windows paths), what a missing
split costs, and splits without labels (YD805). The real check_dataset is the oracle where the
yolov5 package is available (marker `yolov5`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import check_with_data, findings_of, oracle_python, shapes_dataset, shared
from yolodiag.cli import app
from yolodiag.data import read_data, yolov5_root

pytest.importorskip("PIL")
HERE = Path(__file__).parent


def yolov5s() -> Path:
    return shared("yamls", "stock", "yolov5s.yaml")


def golden_data() -> Path:
    return shared("golden", "data", "shapes", "shapes.yaml")


def rewrite(data: Path, **keys: str | list[str]) -> Path:
    """The data YAML with these top-level keys replaced, a value or a list of them (written in
    YAML's single quotes, so a backslash stays a backslash)."""
    kept = [line for line in data.read_text().splitlines()
            if line.split(":", 1)[0] not in keys]
    written = [f"{k}: [{', '.join(repr(x) for x in v)}]" if isinstance(v, list) else
               f"{k}: '{v}'" for k, v in keys.items()]
    data.write_text("\n".join([*written, *kept]) + "\n")
    return data


def test_golden_path_dot_is_the_yolov5_root_not_the_yaml_folder_and_the_checks_go_on(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the working directory stands in for the YOLOv5 root
    root = Path.cwd()
    code, report = check_with_data(yolov5s(), golden_data())
    [unresolved] = findings_of(report, "YD804")
    assert code == 1 and unresolved["severity"] == "error"
    assert unresolved["data"]["not_found"] == {"train": [str(root / "images" / "train")],
                                               "val": [str(root / "images" / "val")]}
    assert "check_dataset stops with 'Dataset not found'" in unresolved["message"]
    assert unresolved["data"]["read_as"] == str(golden_data().parent)
    assert unresolved["location"]["line"] == 1  # the `path:` row
    assert f"`path: {golden_data().parent}`" in unresolved["hint"]
    resolution = report["data"]["resolution"]
    assert (resolution["read_as"], resolution["yolov5_path"], resolution["root_given"]) == (
        "data-yaml-folder", str(root), False)
    train, val = report["data"]["splits"]["train"], report["data"]["splits"]["val"]
    assert (train["objects"], val["objects"]) == (34, 17)  # read where the user meant
    assert report["data"]["anchor_fit"]["bpr"] == 1.0
    assert [f["code"] for f in report["findings"]] == ["YD804"]
    text = " ".join(CliRunner().invoke(app, ["check", str(yolov5s()), "--data",
                                             str(golden_data())]).stdout.split())  # unwrapped
    assert (f"data: `path: .` resolved as YOLOv5 v7.0 resolves it, against the YOLOv5 root "
            f"({root}, the working directory): {root}; not found there, so read relative to "
            f"the data YAML's folder instead: {golden_data().parent} (YD804)") in text


def test_run_from_the_data_folder_path_dot_is_that_folder(monkeypatch):
    monkeypatch.chdir(golden_data().parent)
    code, report = check_with_data(yolov5s(), golden_data())
    assert code == 0 and report["findings"] == []
    assert report["data"]["resolution"]["read_as"] == "yolov5"


def test_root_keyword_is_what_a_relative_path_resolves_against(tmp_path):
    data = shapes_dataset(tmp_path / "datasets" / "shapes")
    rewrite(data, path="../datasets/shapes")  # YOLOv5's own convention, from its root
    checkout = tmp_path / "yolov5"
    checkout.mkdir()
    info = read_data(data, root=checkout)
    assert info.located.yolov5_base == data.parent and not info.located.as_meant
    assert len(info.splits["train"].images) == 16
    elsewhere = read_data(data, root=tmp_path)  # tmp/../datasets/shapes does not exist
    assert elsewhere.located.yolov5_base == tmp_path.parent / "datasets" / "shapes"
    # nor does it beside the data YAML (datasets/shapes/../datasets/shapes): no other reading
    assert not elsewhere.located.as_meant
    assert elsewhere.splits["train"].absent == ("images/train",)


def test_a_string_entry_falls_back_without_its_dotdot_and_a_list_does_not(tmp_path):
    data = shapes_dataset(tmp_path / "shapes")
    rewrite(data, train="../images/train", val="../images/val")
    info = read_data(data)
    assert (len(info.splits["train"].images), len(info.splits["val"].images)) == (16, 8)
    rewrite(data, train=["../images/train"])
    code, report = check_with_data(yolov5s(), data)
    [absent] = findings_of(report, "YD801")
    assert code == 1 and absent["data"]["absent"] == ["../images/train"]
    assert "train.py's loader stops before training" in absent["message"]


@pytest.mark.parametrize(("split", "severity", "effect"), [
    ("val", "error", "check_dataset stops with 'Dataset not found' before training"),
    ("train", "error", "train.py's loader stops before training"),
    ("test", "warning", "train.py never reads it")])
def test_a_missing_split_costs_what_v7_does_with_it(tmp_path, split, severity, effect):
    data = rewrite(shapes_dataset(tmp_path / "shapes"), **{split: "images/nowhere"})
    _, report = check_with_data(yolov5s(), data)
    [absent] = findings_of(report, "YD801")
    assert absent["severity"] == severity and effect in absent["message"]
    assert findings_of(report, "YD804") == []  # the data YAML's folder does not have it either


def test_windows_paths_are_named_once(tmp_path):
    data = rewrite(shapes_dataset(tmp_path / "shapes"), path="C:\\data\\shapes")
    code, report = check_with_data(yolov5s(), data)
    [unresolved] = findings_of(report, "YD804")
    assert code == 1 and "`C:\\data\\shapes` is a Windows path" in unresolved["message"]
    assert unresolved["data"]["read_as"] is None  # nothing found: no reading to go on with
    assert findings_of(report, "YD801") == []  # the same unresolved paths, not a second finding
    data = rewrite(shapes_dataset(tmp_path / "backslashes"), train="images\\train")
    _, report = check_with_data(yolov5s(), data)
    [unresolved] = findings_of(report, "YD804")
    assert unresolved["data"]["windows"] == ["images\\train"]
    assert unresolved["data"]["not_found"] == {"train": [str(data.parent / "images\\train")]}
    assert report["data"]["splits"]["train"]["objects"] == 34  # backslashes read as separators


def test_train_labels_all_empty_are_yd805_and_no_best_possible_recall(tmp_path):
    data = shapes_dataset(tmp_path / "shapes")
    for label in (data.parent / "labels" / "train").glob("*.txt"):
        label.write_text("")
    code, report = check_with_data(yolov5s(), data)
    [none] = findings_of(report, "YD805")
    assert code == 1 and none["severity"] == "error" and none["data"]["split"] == "train"
    assert "'All labels empty ... can not start training'" in none["message"]
    assert report["data"]["anchor_fit"] is None
    assert report["assignment"]["source"] == "synthetic"  # not an assignment of no targets
    assert findings_of(report, "YD803") == [] and findings_of(report, "YD405") == []


def test_val_labels_all_empty_and_a_split_without_images_are_yd805(tmp_path):
    data = shapes_dataset(tmp_path / "shapes")
    for label in (data.parent / "labels" / "val").glob("*.txt"):
        label.write_text("")
    (data.parent / "images" / "none").mkdir()
    rewrite(data, test="images/none")
    _, report = check_with_data(yolov5s(), data)
    by_split = {f["data"]["split"]: f for f in findings_of(report, "YD805")}
    assert set(by_split) == {"val", "test"}
    assert by_split["val"]["severity"] == "error" and "P = R = mAP = 0" in by_split["val"][
        "message"]
    assert by_split["test"]["severity"] == "warning"
    assert "images/none holds no image" in by_split["test"]["message"]
    assert report["data"]["anchor_fit"]["labels"] == 34  # the train labels are still there


def test_repo_folder_is_the_yolov5_root(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolo.py").write_text("")
    assert yolov5_root(tmp_path) == tmp_path
    assert yolov5_root("pip") is None and yolov5_root(None) is None


@pytest.mark.yolov5
def test_resolution_equals_the_real_check_dataset(tmp_path):
    """The real v7.0 check_dataset on the same files: what it resolves and where it stops."""
    python = oracle_python()
    copy = shapes_dataset(tmp_path / "shapes").parent
    variants = {"dot": {"path": "."}, "absent": {"path": ""}, "absolute": {},
                "fallback": {"train": "../images/train", "val": "../images/val"},
                "list": {"val": ["images/val", "images/nowhere"]},
                "dotdot-list": {"train": ["../images/train"], "val": ["../shapes/images/val"]},
                "no-train": {"train": "images/nowhere"}, "no-val": {"val": "images/nowhere"},
                "windows": {"path": "C:\\data\\shapes"}, "backslash": {"val": "images\\val"}}
    files = []
    for name, keys in variants.items():
        data = copy / f"{name}.yaml"
        data.write_text((copy / "shapes.yaml").read_text())
        files.append(str(rewrite(data, **keys)))
    done = subprocess.run([python, "-W", "ignore", str(HERE / "oracle" /
                                                       "yolov5_check_dataset.py"), *files],
                          check=True, capture_output=True, text=True,
                          env={**os.environ, "YOLO_OFFLINE": "1"})
    oracle = json.loads(done.stdout.strip().splitlines()[-1])
    for file in files:
        theirs, located = oracle["results"][file], read_data(file, root=oracle["root"]).located
        if "raised" in theirs:
            assert theirs["raised"].startswith("Dataset not found"), file
            assert [str(e.target) for e in located.not_found("val")] == theirs["missing"], file
        else:
            ours = {k: [str(e.target) for e in v] for k, v in located.yolov5_entries.items()}
            assert ours == theirs and not located.not_found("val"), file
