"""Test helpers. The project's shared files (golden figures recorded from the real YOLOv5 v7.0,
YOLOv7 and Ultralytics, the stock, seed and community YAMLs, the shapes dataset, checkpoints) are
reached through `shared()` only. They come from `tests/shared`, the repository's own copy of the
project's `../shared` (tests/shared/make.py builds it; its README says what each file is and
which were shrunk), or from $YOLODIAG_SHARED when that is set (e.g. to `../shared` itself). What
the copy leaves out (other people's code: the community YAMLs) is read from `../shared` when it is
there. A test whose file is absent skips with a clear reason; the core tests need none of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FROM_ENVIRONMENT = bool(os.environ.get("YOLODIAG_SHARED"))
SHARED = Path(os.environ["YOLODIAG_SHARED"]) if FROM_ENVIRONMENT else ROOT / "tests" / "shared"


PROJECT_SHARED = ROOT.parent / "shared"  # the project's folder tests/shared is made from


def shared(*parts: str) -> Path:
    """Path of a shared file: in $YOLODIAG_SHARED when that is set; else tests/shared's copy,
    or the project's ../shared for what the copy leaves out (other people's code: the community
    YAMLs). Skips the test when the file is in neither."""
    path = SHARED.joinpath(*parts)
    if path.exists():
        return path
    if FROM_ENVIRONMENT:
        pytest.skip(f"needs {path} ($YOLODIAG_SHARED points there; unset it to use the copy "
                    "in tests/shared)")
    original = PROJECT_SHARED.joinpath(*parts)
    if original.exists():
        return original
    pytest.skip(f"needs {'/'.join(parts)} in tests/shared or {PROJECT_SHARED}: tests/shared "
                "holds no third-party code (see its README); rebuild it with "
                "tests/shared/make.py if the file belongs there")


SCHEMA = ROOT / "yolodiag" / "schemas" / "report.schema.json"


def validate(report: dict) -> None:
    """The JSON report against its published schema (skips without jsonschema)."""
    import json

    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(report, json.loads(SCHEMA.read_text()),
                        cls=jsonschema.Draft202012Validator)


def shapes_dataset(folder: Path) -> Path:
    """A copy of the golden `shapes` dataset in `folder` (the original is never touched); its
    data YAML gets an absolute `path:`, as the recorded train.py runs used it, since v7.0
    resolves the golden `path: .` against the YOLOv5 root. Returns the data YAML."""
    import shutil

    shutil.copytree(shared("golden", "data", "shapes"), folder)
    data = folder / "shapes.yaml"
    data.write_text(data.read_text().replace("path: .  # relative to this file",
                                             f"path: {folder}"))
    return data


def check_with_data(model: Path, data: Path, *options: str) -> tuple[int, dict]:
    """`yolodiag check MODEL --data DATA -f json`: exit code and the validated report."""
    import json

    from typer.testing import CliRunner

    from yolodiag.cli import app

    result = CliRunner().invoke(app, ["check", str(model), "--data", str(data), "-f", "json",
                                      *options])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    validate(report)
    return result.exit_code, report


def findings_of(report: dict, code: str) -> list[dict]:
    return [f for f in report["findings"] if f["code"] == code]


def write_yaml(tmp_path: Path, text: str, name: str = "model.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# A small valid model: every hand-written test YAML starts from this and edits a line.
TINY = """\
nc: 2
depth_multiple: 1.0
width_multiple: 1.0
anchors:
  - [10,13, 16,30, 33,23]  # P3/8
  - [30,61, 62,45, 59,119]  # P4/16
backbone:
  [[-1, 1, Conv, [16, 3, 2]],    # 0 /2
   [-1, 1, Conv, [32, 3, 2]],    # 1 /4
   [-1, 2, C3, [32]],            # 2
   [-1, 1, Conv, [64, 3, 2]],    # 3 /8
   [-1, 1, Conv, [128, 3, 2]],   # 4 /16
  ]
head:
  [[-1, 1, nn.Upsample, [None, 2, 'nearest']],  # 5 /8
   [[-1, 3], 1, Concat, [1]],                   # 6
   [-1, 1, Conv, [64, 1, 1]],                   # 7
   [[7, 4], 1, Detect, [nc, anchors]],          # 8
  ]
"""


NUMERICS = ["yolov5n", "yolov5n-resnet18"]  # the models golden/numerics records


def recorded_numerics(name: str):
    """(recorded dict, our model built from its YAML with its state dict loaded strictly)."""
    import torch

    from yolodiag.build.builder import build
    from yolodiag.spec import parse_spec

    recorded = torch.load(shared("golden", "numerics", f"{name}.numerics.pt"), weights_only=True)
    built = build(parse_spec(recorded["yaml"], name), nc=recorded["nc"])
    built.model.load_state_dict({k: v.float() for k, v in recorded["state_dict"].items()},
                                strict=True)
    return recorded, built


def oracle_python() -> str:
    """An interpreter where the real `yolov5` package imports ($YOLOV5_PYTHON or this one);
    skips the test otherwise."""
    python = os.environ.get("YOLOV5_PYTHON", sys.executable)
    probe = subprocess.run([python, "-c", "import yolov5"], capture_output=True,
                           env={**os.environ, "YOLO_OFFLINE": "1"})
    if probe.returncode != 0:
        pytest.skip("the yolov5 pip package is not importable here or in $YOLOV5_PYTHON")
    return python
