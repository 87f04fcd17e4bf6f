"""--data: the golden `shapes` dataset read as YOLOv5's train.py reads it, broken copies of it,
the anchors' best possible recall against an independent computation, and real batches."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import (
    TINY,
    check_with_data,
    findings_of,
    shapes_dataset,
    shared,
    validate,
    write_yaml,
)
from yolodiag.cli import app
from yolodiag.data import best_possible_recall, data_batch, label_path, read_data

pytest.importorskip("PIL")
runner = CliRunner()
SHAPES = ("golden", "data", "shapes")
# yolov5s's anchor rows in pixels (P3, P4, P5), as its YAML writes them.
YOLOV5S_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119],
                   [116, 90, 156, 198, 373, 326]]


@pytest.fixture
def shapes_copy(tmp_path) -> Path:
    """A copy of the golden dataset to break, its `path:` absolute."""
    return shapes_dataset(tmp_path / "shapes").parent


@pytest.fixture(scope="module")
def shapes_yaml(tmp_path_factory) -> Path:
    """The golden dataset unchanged, with an absolute `path:` (v7.0 reads the golden `path: .`
    against the YOLOv5 root: test_data_paths.py)."""
    return shapes_dataset(tmp_path_factory.mktemp("data") / "shapes")


def yolov5s() -> Path:
    return shared("yamls", "stock", "yolov5s.yaml")


def test_shapes_passes_clean_and_is_read_as_yolov5_reads_it(shapes_yaml):
    code, report = check_with_data(yolov5s(), shapes_yaml)
    assert code == 0 and report["findings"] == []
    data = report["data"]
    assert data["classes"] == 3 and report["model"]["nc"] == 3  # train.py's nc override
    train, val = data["splits"]["train"], data["splits"]["val"]
    assert (train["images"], train["objects"], val["images"], val["objects"]) == (16, 34, 8, 17)
    assert train["labels_missing"] == train["labels_empty"] == train["dropped"] == 0
    assert report["assignment"]["source"] == "train" and report["assignment"]["targets"] == 34


def test_pixel_coordinates_are_counted_and_dropped(shapes_copy):
    for name in ("000", "001", "002"):
        label = shapes_copy / "labels" / "train" / f"{name}.txt"
        rows = np.loadtxt(label, ndmin=2)
        rows[:, 1:] *= 160  # the images are 160x160
        np.savetxt(label, rows, fmt="%g")
    code, report = check_with_data(yolov5s(), shapes_copy / "shapes.yaml")
    problems = findings_of(report, "YD802")
    assert code == 0 and len(problems) == 1  # 13 images still train: a warning
    assert problems[0]["data"]["kind"] == "pixels" and problems[0]["data"]["files"] == 3
    assert problems[0]["data"]["images"] == 16 and problems[0]["severity"] == "warning"
    assert "YOLOv5 drops these images" in problems[0]["message"]
    assert report["data"]["splits"]["train"]["dropped"] == 3


def test_every_train_label_file_dropped_is_an_error_train_py_stops_on(shapes_copy):
    for label in (shapes_copy / "labels" / "train").glob("*.txt"):
        rows = np.loadtxt(label, ndmin=2)
        rows[:, 1:] *= 160
        np.savetxt(label, rows, fmt="%g")
    code, report = check_with_data(yolov5s(), shapes_copy / "shapes.yaml")
    [problem] = findings_of(report, "YD802")
    assert code == 1 and problem["severity"] == "error" and problem["data"]["files"] == 16
    assert "no label file is left: train.py stops ('No labels found')" in problem["message"]
    assert findings_of(report, "YD805") == []  # one defect: YD802 names it


def test_class_ids_at_or_above_nc_are_counted_per_split(shapes_copy):
    for split, names in (("train", ("003", "004")), ("val", ("000",))):
        for name in names:
            label = shapes_copy / "labels" / split / f"{name}.txt"
            label.write_text("5 0.5 0.5 0.2 0.2\n" + label.read_text())
    _, report = check_with_data(yolov5s(), shapes_copy / "shapes.yaml")
    by_split = {f["data"]["split"]: f for f in findings_of(report, "YD802")}
    assert by_split["train"]["data"]["files"] == 2 and by_split["val"]["data"]["files"] == 1
    assert "train.py stops" in by_split["train"]["message"]
    assert "no prediction can match" in by_split["val"]["message"]
    assert report["data"]["splits"]["train"]["dropped"] == 0  # kept, as YOLOv5 keeps them


def test_missing_labels_folder(shapes_copy):
    shutil.rmtree(shapes_copy / "labels" / "val")
    _, report = check_with_data(yolov5s(), shapes_copy / "shapes.yaml")
    missing = findings_of(report, "YD801")
    assert len(missing) == 1 and missing[0]["data"]["split"] == "val"
    assert (missing[0]["data"]["missing"], missing[0]["data"]["images"]) == (8, 8)
    assert "images/val/000.png -> labels/val/000.txt" in missing[0]["message"]
    assert missing[0]["location"]["line"] == 3  # data.yaml's `val:` row


def test_empty_label_files(shapes_copy):
    for label in sorted((shapes_copy / "labels" / "train").glob("*.txt"))[:10]:
        label.write_text("")
    _, report = check_with_data(yolov5s(), shapes_copy / "shapes.yaml")
    empty = findings_of(report, "YD803")
    assert [(f["data"]["empty"], f["data"]["label_files"]) for f in empty] == [(10, 16)]


def test_nc_mismatch_with_names(shapes_copy):
    data = shapes_copy / "shapes.yaml"
    data.write_text(data.read_text().replace("nc: 3", "nc: 4"))
    code, report = check_with_data(yolov5s(), data)
    mismatch = findings_of(report, "YD109")
    # a warning: YOLOv5 v7.0 trains len(names) classes, which is what the labels hold
    assert code == 0 and len(mismatch) == 1 and mismatch[0]["severity"] == "warning"
    assert mismatch[0]["data"] == {"data_nc": 4, "names": 3}
    assert report["model"]["nc"] == 3


def test_detect_row_with_a_number_other_than_the_datas_classes(tmp_path, shapes_yaml):
    model = write_yaml(tmp_path, TINY.replace("Detect, [nc, anchors]", "Detect, [2, anchors]"))
    code, report = check_with_data(model, shapes_yaml, "--img", "160")
    fewer = findings_of(report, "YD109")[0]
    assert fewer["data"] == {"detect_nc": 2, "nc": 3}
    assert fewer["severity"] == "error" and code == 1  # class 2 indexes past a 2-class head


def test_absent_split_and_txt_lists_resolve_as_yolov5_does(shapes_copy):
    listing = shapes_copy / "train.txt"
    listing.write_text("".join(f"./images/train/{i:03d}.png\n" for i in range(5)))
    data = shapes_copy / "shapes.yaml"
    data.write_text(data.read_text().replace("train: images/train", "train: train.txt")
                    .replace("val: images/val", "val: images/nowhere"))
    info = read_data(data)
    assert len(info.splits["train"].images) == 5
    assert info.splits["val"].absent == ("images/nowhere",)
    _, report = check_with_data(yolov5s(), data)
    assert "images/nowhere does not exist" in findings_of(report, "YD801")[0]["message"]


def test_label_rules_polygons_negative_and_columns(tmp_path):
    folder = shapes_dataset(tmp_path / "d").parent
    labels = folder / "labels" / "train"
    (labels / "000.txt").write_text("1 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n")  # a polygon
    (labels / "001.txt").write_text("0 -0.1 0.5 0.2 0.2\n")
    (labels / "002.txt").write_text("0 0.5 0.5 0.2\n")
    (labels / "003.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n")  # duplicates
    (labels / "004.txt").write_text("2 0.5 0.5 0.2 0.2\n0 0.3 0.3 0.1 0.1\n")  # order kept
    split = read_data(folder / "shapes.yaml").splits["train"]
    image = folder / "images" / "train"
    np.testing.assert_allclose(split.labels[image / "000.png"], [[1, 0.2, 0.25, 0.2, 0.3]],
                               rtol=1e-6)
    assert {p.kind for p in split.problems} == {"negative", "columns"}
    assert image / "001.png" not in split.labels and image / "002.png" not in split.labels
    assert len(split.labels[image / "003.png"]) == 1
    assert split.labels[image / "004.png"][:, 0].tolist() == [2, 0]  # as YOLOv5 reads it


def test_label_path_is_yolov5s_rule():
    assert label_path(Path("/a/images/b/images/c.jpg")) == Path("/a/images/b/labels/c.txt")
    assert label_path(Path("/a/x/c.png")) == Path("/a/x/c.txt")


def _independent_bpr(anchor_rows: list[list[int]], img: int = 640) -> tuple[float, float]:
    """YOLOv5's AutoAnchor metric written out again from its definition (explain YD405)."""
    sizes = []
    for label in sorted(shared(*SHAPES, "labels", "train").glob("*.txt")):
        for row in label.read_text().split("\n"):
            if row.strip():
                _, _, _, w, h = map(float, row.split())
                sizes.append((w * img, h * img))  # 160x160 images: long side scaled to img
    anchors = [(row[i], row[i + 1]) for row in anchor_rows for i in range(0, len(row), 2)]
    recalled, above = 0, 0
    for w, h in sizes:
        worst = [min(min(w / aw, aw / w), min(h / ah, ah / h)) for aw, ah in anchors]
        recalled += max(worst) > 1 / 4
        above += sum(m > 1 / 4 for m in worst)
    return recalled / len(sizes), above / len(sizes)


def test_best_possible_recall_equals_yolov5s_formula(tmp_path, shapes_yaml):
    _, report = check_with_data(yolov5s(), shapes_yaml)
    fit = report["data"]["anchor_fit"]
    bpr, aat = _independent_bpr(YOLOV5S_ANCHORS)
    assert (fit["bpr"], fit["labels"], fit["img"]) == (bpr, 34, 640) and bpr == 1.0
    assert fit["aat"] == pytest.approx(aat, abs=1e-6)  # 3.882353 (YOLOv5 prints 3.88)
    # Anchors 5x smaller: half the labels have no anchor within 4x: BPR 0.5 (YOLOv5 prints the
    # same 0.500 and 0.50 anchors/target with its random scale fixed to 1).
    small = [[round(v / 5) for v in row] for row in YOLOV5S_ANCHORS]
    text = yolov5s().read_text()
    for row, new in zip(YOLOV5S_ANCHORS, small):
        text = text.replace(", ".join(f"{row[i]},{row[i + 1]}" for i in range(0, 6, 2)),
                            ", ".join(f"{new[i]},{new[i + 1]}" for i in range(0, 6, 2)))
    model = write_yaml(tmp_path, text)
    _, report = check_with_data(model, shapes_yaml)
    bpr, aat = _independent_bpr(small)
    fit = report["data"]["anchor_fit"]
    assert fit["bpr"] == pytest.approx(bpr, abs=1e-6) and fit["aat"] == pytest.approx(aat,
                                                                                        abs=1e-6)
    assert bpr < 0.98 and findings_of(report, "YD405")[0]["data"]["bpr"] == round(bpr, 6)


def test_best_possible_recall_of_no_label_is_undefined_not_one():
    bpr, aat = best_possible_recall(np.zeros((0, 2)), np.ones((3, 2)), 4.0)
    assert math.isnan(bpr) and math.isnan(aat)  # YOLOv5's mean over no labels


def test_letterboxed_batch_keeps_boxes_on_their_objects(tmp_path):
    from PIL import Image

    folder = tmp_path / "wide"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    image = Image.new("RGB", (200, 100), (0, 0, 0))
    image.paste((255, 255, 255), (100, 25, 140, 75))  # a 40x50 white box centred (120, 50)
    image.save(folder / "images" / "a.png")
    (folder / "labels" / "a.txt").write_text("0 0.6 0.5 0.2 0.5\n")
    (folder / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [box]\n")
    split = read_data(folder / "data.yaml", root=folder).splits["train"]
    images, targets = data_batch(split, (128, 128), 1)
    # 200x100 -> 128x64 placed 32 px down on grey: the box is (64..89.6, 48..80) in pixels.
    np.testing.assert_allclose(targets.numpy(), [[0, 0, 0.6, 0.5, 0.2, 0.25]], atol=1e-6)
    assert images.shape == (1, 3, 128, 128)
    assert images[0, :, 10, 10].tolist() == pytest.approx([114 / 255] * 3)  # the padding
    assert images[0, :, 64, 76].tolist() == pytest.approx([1.0] * 3)  # inside the box


def test_overfit_and_gradflow_take_their_batch_from_the_train_split(shapes_yaml):
    data = str(shapes_yaml)
    yolov5n = str(shared("yamls", "stock", "yolov5n.yaml"))
    result = runner.invoke(app, ["overfit", yolov5n, "--data", data, "--batch", "4", "--steps",
                                 "3", "--img", "128", "-f", "json"])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    validate(report)
    first_four = sum(len(read_data(data).splits["train"].labels[p])
                     for p in list(read_data(data).splits["train"].labels)[:4])
    fit = report["overfit"]
    assert fit["targets"] == first_four == 9 and sum(fit["positives_per_level"]) > 0
    assert report["model"]["nc"] == 3 and report["data"]["classes"] == 3
    result = runner.invoke(app, ["gradflow", yolov5n, "--data", data, "--batch", "2", "--img",
                                 "128", "-f", "json"])
    assert result.exit_code in (0, 1), result.output
    assert json.loads(result.stdout)["data"]["splits"]["train"]["images"] == 16


def test_a_data_yaml_that_is_not_one_is_one_line_exit_2(tmp_path):
    bad = write_yaml(tmp_path, "just: text\n", "data.yaml")
    result = runner.invoke(app, ["check", str(write_yaml(tmp_path, TINY)), "--data", str(bad)])
    assert result.exit_code == 2 and "not a YOLOv5 data YAML" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_text_report_says_what_the_data_holds_and_what_ran_on_it(shapes_yaml):
    data = str(shapes_yaml)
    text = runner.invoke(app, ["check", str(yolov5s()), "--data", data], terminal_width=200)
    assert "data train: 16 images, 34 objects" in text.stdout
    assert "best possible recall 1.0000, 3.88 anchors per label" in text.stdout
    assert "assignment of the train labels, letterboxed (16 images, 34 objects" in text.stdout
    text = runner.invoke(app, ["overfit", str(shared("yamls", "stock", "yolov5n.yaml")),
                               "--data", data, "--steps", "1", "--img", "64"],
                         terminal_width=200)
    assert f"on 2 train images of {data}" in text.stdout


def test_image_size_follows_exif_rotation_as_yolov5(tmp_path):
    from PIL import Image

    from yolodiag.data import image_size

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: YOLOv5 swaps width and height
    Image.new("RGB", (200, 100)).save(tmp_path / "r.jpg", exif=exif)
    Image.new("RGB", (200, 100)).save(tmp_path / "p.png")
    assert image_size(tmp_path / "r.jpg") == (100, 200)
    assert image_size(tmp_path / "p.png") == (200, 100)


def test_detect_row_with_more_classes_than_the_data_is_a_warning(tmp_path, shapes_yaml):
    model = write_yaml(tmp_path, TINY.replace("Detect, [nc, anchors]", "Detect, [5, anchors]"))
    code, report = check_with_data(model, shapes_yaml, "--img", "160")
    more = findings_of(report, "YD109")[0]
    assert more["data"] == {"detect_nc": 5, "nc": 3}
    assert more["severity"] == "warning" and code == 0  # extra outputs only learn "absent"
