"""`--repo`: building a YAML with the user's own YOLOv5 code in a subprocess (yolodiag/repo.py).

The fake checkouts under tests/data (written for these tests, not taken from YOLOv5) exercise the
worker without YOLOv5: `fake_yolov5` builds with our own builder and presents the result as
YOLOv5's model does, `fake_yolov5_broken` fails at a known row. Tests marked `yolov5` run the
real YOLOv5 (see conftest.oracle_python) and compare what comes back with our own build.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from torch import nn

from conftest import TINY, oracle_python, shared, write_yaml
from yolodiag.build.builder import build
from yolodiag.dialects.yolov5.repo import REQUIRED, RepoFailure, build_with_repo
from yolodiag.dialects.yolov5.table import MODULES
from yolodiag.findings import Unsupported
from yolodiag.spec import load_spec
from yolodiag.trace import trace

DATA = Path(__file__).parent / "data"
FAKE, BROKEN = DATA / "fake_yolov5", DATA / "fake_yolov5_broken"

# An activation argument, a subclass of C3 (C3x), a row stacked as copies, a torch class whose
# __init__ its private base defines, Concat and Detect.
FAKE_YAML = TINY.partition("backbone:")[0] + """\
backbone:
  [[-1, 1, Conv, [16, 3, 2]],                                # 0 /2
   [-1, 1, Conv, [32, 3, 2, None, 1, 1, nn.LeakyReLU(0.1)]], # 1 /4
   [-1, 2, C3x, [32]],                                       # 2
   [-1, 1, Conv, [64, 3, 2]],                                # 3 /8
   [-1, 2, Conv, [64, 3, 1]],                                # 4 two copies
   [-1, 1, Conv, [128, 3, 2]],                               # 5 /16
   [-1, 1, nn.MaxPool2d, [3, 1, 1]],                         # 6 __init__ in a private base
  ]
head:
  [[-1, 1, nn.Upsample, [None, 2, 'nearest']],  # 7 /8
   [[-1, 4], 1, Concat, [1]],                   # 8
   [-1, 1, Conv, [64, 1, 1]],                   # 9
   [[9, 6], 1, Detect, [nc, anchors]],          # 10
  ]
"""
# At 100x100 layer 6 gives 7x7, upsampled to 14x14 against layer 4's 13x13: Concat fails.
FAKE_SIZES = [(64, 96), (100, 100)]
FAKE_NAMES = ["Conv", "C3x", "nn.Upsample", "torch.nn.Upsample", "Concat", "Detect", "NoSuch"]


def _copies(layer: nn.Module) -> int:
    return len(layer) if type(layer) is nn.Sequential else 1


def _our_layers(built) -> list[tuple]:
    return [(r.index, r.from_, r.type, r.args, _copies(m), r.params)
            for r, m in zip(built.layers, built.model.model)]


def _their_layers(result) -> list[tuple]:
    return [(la.index, la.from_, la.type, la.args, la.copies, la.params) for la in result.layers]


def _our_signature(name: str) -> list[tuple]:
    """Our class's positional parameters as the worker reports them (defaults through JSON)."""
    parameters = inspect.signature(MODULES[name].load()).parameters.values()
    return [(p.name, REQUIRED if p.default is p.empty else json.loads(json.dumps(p.default)))
            for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _checkout(tmp_path: Path, code: str) -> Path:
    folder = tmp_path / "checkout"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "yolo.py").write_text(code, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    """The fake builds, run side by side (each subprocess imports torch: seconds apiece)."""
    tmp = tmp_path_factory.mktemp("repo")
    fake_yaml = write_yaml(tmp, FAKE_YAML, "fake.yaml")
    boom_yaml = write_yaml(tmp, TINY.replace("nn.Upsample, [None, 2, 'nearest']", "Boom, []"),
                           "boom.yaml")
    bogus_yaml = write_yaml(tmp, TINY.replace("[-1, 1, Conv, [64, 3, 2]]",
                                              "[-1, 1, MyConv, [64, 3, 2]]"), "bogus.yaml")
    # The package form: a folder with __init__.py, imported as `broken_pkg.models.yolo`.
    package = tmp / "broken_pkg"
    shutil.copytree(BROKEN, package)
    (package / "__init__.py").write_text("", encoding="utf-8")
    jobs = {
        "fake": (FAKE, fake_yaml, FAKE_SIZES, FAKE_NAMES),
        "boom": (BROKEN, boom_yaml, [(64, 64)], ["nn.Upsample", "Boom"]),
        "package": (package, bogus_yaml, [(64, 64)], ["Row", "MyConv"]),
    }
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {k: pool.submit(build_with_repo, *job) for k, job in jobs.items()}
        ours = build(load_spec(fake_yaml))  # while the subprocesses run
        results = {k: f.result() for k, f in futures.items()}
    return {**results, "package_dir": package, "ours": ours,
            "our_trace": trace(ours, FAKE_SIZES)}


def test_fake_checkout_layers_equal_our_build(fakes):
    result, ours = fakes["fake"], fakes["ours"]
    assert result.failure is None
    assert result.source == str(FAKE.resolve() / "models" / "yolo.py")
    assert _their_layers(result) == _our_layers(ours)
    # Spelled out: the activation argument as text, C3x's own arguments (not those its
    # super().__init__ passed to C3), two copies of a Conv.
    assert result.layers[1].args == (16, 32, 3, 2, None, 1, 1, "nn.LeakyReLU(0.1)")
    assert result.layers[2].args == (32, 32, 2)
    assert (result.layers[4].type, result.layers[4].copies) == ("Conv", 2)
    assert result.layers[6].args == (3, 1, 1)
    assert result.layers[10].args == (2, ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119)),
                                      (64, 128))
    assert result.state == {k: list(v.shape) for k, v in ours.model.state_dict().items()}
    assert list(result.state) == list(ours.model.state_dict())
    assert result.stride == ours.stride == (8.0, 16.0)
    assert result.anchors == ours.anchors.tolist()


def test_fake_checkout_trace_equals_our_trace_including_a_failing_size(fakes):
    result = fakes["fake"]
    assert result.trace == fakes["our_trace"]  # every field, the dataclasses rebuilt
    ok, failed = result.trace.sizes
    assert ok.ok and ok.img == (64, 96)
    assert ok.layer(10).out_shape[0] == [1, 3 * (8 * 12 + 4 * 6), 7]
    assert (failed.failed_layer, failed.failed_op) == (8, "cat")
    assert failed.error.startswith("RuntimeError: ")
    assert failed.layer(8).in_shapes == ([[1, 128, 14, 14], [1, 64, 13, 13]],)


def test_fake_checkout_signatures_resolve_names_without_eval(fakes):
    signatures = fakes["fake"].signatures
    assert set(signatures) == set(FAKE_NAMES) - {"NoSuch"}
    for name in ("Conv", "C3x", "nn.Upsample", "Concat", "Detect"):
        assert signatures[name] == _our_signature(name), name
    assert signatures["torch.nn.Upsample"] == signatures["nn.Upsample"]
    assert signatures["Conv"][:3] == [("c1", REQUIRED), ("c2", REQUIRED), ("k", 1)]


def test_a_layer_failing_in_their_first_forward_is_named_by_the_running_module(fakes):
    result = fakes["boom"]
    assert result.failure == RepoFailure(5, "RuntimeError", "Boom cannot run", "build")
    assert result.layers == () and result.trace is None
    assert set(result.signatures) == {"nn.Upsample"}  # Boom is not a name in their module


def test_package_folder_form_and_a_failure_named_by_parse_models_row(fakes):
    result = fakes["package"]
    assert result.source == str(fakes["package_dir"].resolve() / "models" / "yolo.py")
    assert result.failure == RepoFailure(3, "NameError", "name 'MyConv' is not defined", "build")
    assert result.signatures == {"Row": [("module", REQUIRED)]}


def test_code_that_cannot_be_imported_is_a_failure_not_an_exception(tmp_path):
    repo = _checkout(tmp_path, "import yolodiag_test_no_such_module\n")
    result = build_with_repo(repo, write_yaml(tmp_path, TINY), [(64, 64)], ["Conv"])
    assert result.failure == RepoFailure(None, "ModuleNotFoundError",
                                         "No module named 'yolodiag_test_no_such_module'",
                                         "import")
    assert (result.layers, result.trace, result.signatures) == ((), None, {})


def test_a_worker_that_dies_without_a_result_is_unsupported_with_its_last_words(tmp_path):
    repo = _checkout(tmp_path, "import os, sys\nsys.stderr.write('about to crash\\n')\n"
                               "sys.stderr.flush()\nos._exit(139)\n")
    with pytest.raises(Unsupported, match=r"exit 139.*: about to crash$") as caught:
        build_with_repo(repo, write_yaml(tmp_path, TINY), [(64, 64)], [])
    assert "\n" not in str(caught.value)


def test_a_worker_past_its_timeout_is_unsupported(tmp_path):
    repo = _checkout(tmp_path, "import time\ntime.sleep(60)\n")
    with pytest.raises(Unsupported, match="took over 0.5 s"):
        build_with_repo(repo, write_yaml(tmp_path, TINY), [(64, 64)], [], timeout=0.5)


def test_anything_but_a_checkout_a_package_folder_or_yolov5_is_unsupported(tmp_path):
    (tmp_path / "empty").mkdir()
    bad_name = tmp_path / "not-a-name"
    (bad_name / "models").mkdir(parents=True)
    (bad_name / "models" / "yolo.py").write_text("", encoding="utf-8")
    (bad_name / "__init__.py").write_text("", encoding="utf-8")
    yaml_path = write_yaml(tmp_path, TINY)
    for repo in (tmp_path / "empty", tmp_path / "missing", yaml_path, bad_name, "yolov8"):
        with pytest.raises(Unsupported, match="expected a YOLOv5 checkout") as caught:
            build_with_repo(repo, yaml_path, [(64, 64)], [])
        assert "\n" not in str(caught.value)


# ---- the real YOLOv5 ----

STOCK_SIZES = [(640, 640), (320, 480)]
STOCK_NAMES = ["Conv", "C3", "SPPF", "nn.Upsample", "Concat", "Detect"]


@pytest.fixture(scope="module")
def yolov5s():
    python = oracle_python()
    path = shared("yamls", "stock", "yolov5s.yaml")
    return python, path, build_with_repo("yolov5", path, STOCK_SIZES, STOCK_NAMES, python=python)


@pytest.mark.yolov5
def test_yolov5s_built_by_yolov5_itself_equals_our_build(yolov5s):
    _, path, result = yolov5s
    ours = build(load_spec(path))
    assert result.failure is None
    assert result.source.endswith("yolov5/models/yolo.py")
    assert _their_layers(result) == _our_layers(ours)
    assert result.state == {k: list(v.shape) for k, v in ours.model.state_dict().items()}
    assert list(result.state) == list(ours.model.state_dict())
    assert result.stride == ours.stride
    assert result.anchors == ours.anchors.tolist()
    for name in STOCK_NAMES:
        assert result.signatures[name] == _our_signature(name), name


@pytest.mark.yolov5
def test_yolov5s_traced_through_yolov5_equals_our_trace(yolov5s):
    _, path, result = yolov5s
    ours = trace(build(load_spec(path)), STOCK_SIZES)
    for theirs, mine in zip(result.trace.sizes, ours.sizes, strict=True):
        assert theirs.ok and mine.ok
        assert [(la.index, la.out_shape, la.stride) for la in theirs.layers] == \
            [(la.index, la.out_shape, la.stride) for la in mine.layers]
    assert result.trace == ours  # in_shapes, multiply-adds and receptive fields too


@pytest.mark.yolov5
def test_yolov5_package_folder_form_gives_the_same_build(yolov5s):
    python, path, result = yolov5s
    folder = subprocess.run([python, "-W", "ignore", "-c",
                             "import os, yolov5; print(os.path.dirname(yolov5.__file__))"],
                            capture_output=True, text=True, check=True,
                            env={**os.environ, "YOLO_OFFLINE": "1"}
                            ).stdout.strip().splitlines()[-1]
    again = build_with_repo(folder, path, STOCK_SIZES, STOCK_NAMES, python=python)
    assert again.source == str(Path(folder).resolve() / "models" / "yolo.py")
    assert dataclasses.replace(again, source=result.source) == result


# ---- `yolodiag check --repo`: their build, read by every check ----

def _check(*args: str) -> tuple[int, dict, str]:
    from typer.testing import CliRunner

    from yolodiag.cli import app

    result = CliRunner().invoke(app, ["check", *args, "-f", "json"])
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}, result.stderr


def test_check_with_a_checkout_reports_its_own_block_and_the_same_model(tmp_path):
    own = write_yaml(tmp_path, TINY.replace("[-1, 1, Conv, [64, 3, 2]],    # 3 /8",
                                            "[-1, 1, Down, [64]],          # 3 /8"))
    code, report, _ = _check(str(own), "--repo", str(FAKE), "--img", "128")
    assert code == 0, report
    layer = report["model"]["layers"][3]
    assert (layer["module"], layer["args"], layer["out_shape"]) == ("Down", [32, 64],
                                                                    [1, 64, 16, 16])
    assert report["model"]["detect"]["strides"] == [8, 16]
    _, ours, _ = _check(str(write_yaml(tmp_path, TINY, "tiny.yaml")), "--img", "128")
    _, theirs, _ = _check(str(write_yaml(tmp_path, TINY, "tiny.yaml")), "--img", "128",
                          "--repo", str(FAKE))
    assert theirs["model"]["layers"] == ours["model"]["layers"]
    assert theirs["findings"] == ours["findings"]


def test_check_with_a_checkout_says_which_yolo_py_and_interpreter_built_it(tmp_path):
    import sys

    import torch
    from typer.testing import CliRunner

    from conftest import validate
    from yolodiag.cli import app

    model = str(write_yaml(tmp_path, TINY))
    code, report, _ = _check(model, "--repo", str(FAKE), "--img", "128")
    assert code == 0
    validate(report)
    assert report["repo"] == {"yolo_py": str(FAKE.resolve() / "models" / "yolo.py"),
                              "python": sys.executable,
                              "python_version": ".".join(map(str, sys.version_info[:3])),
                              "torch": torch.__version__}
    text = CliRunner().invoke(app, ["check", model, "--repo", str(FAKE), "--img", "128"],
                              terminal_width=300).output
    assert (f"built by your YOLOv5: {FAKE.resolve() / 'models' / 'yolo.py'}, in "
            f"{sys.executable} (Python ") in text


def test_check_with_a_checkout_whose_build_fails_names_the_layer(tmp_path):
    spp = TINY.replace("[-1, 1, Conv, [64, 3, 2]],    # 3 /8", "[-1, 1, SPPF, [64, 5]],  # 3")
    code, report, _ = _check(str(write_yaml(tmp_path, spp)), "--repo", str(BROKEN))
    refused = [f for f in report["findings"] if f["code"] == "YD202"]
    assert code in (1, 2) and refused, report
    assert refused[0]["location"]["layer"] == 3 and "NameError" in refused[0]["message"]
    assert report["repo"]["yolo_py"] == str(BROKEN.resolve() / "models" / "yolo.py")


def test_check_with_repo_refuses_unsafe_yaml_before_running_their_code(tmp_path):
    marker = tmp_path / "ran"
    evil = write_yaml(tmp_path, TINY.replace(
        "[16, 3, 2]", f"[__import__('os').mkdir('{marker}'), 3, 2]"))
    code, _, stderr = _check(str(evil), "--repo", str(FAKE))
    assert code == 2 and "YD105" in stderr and not marker.exists()


def test_repo_and_modules_together_are_a_usage_error(tmp_path):
    blocks = write_yaml(tmp_path, "class A(nn.Module):\n    pass\n", "a.py")
    code, _, stderr = _check(str(write_yaml(tmp_path, TINY)), "--repo", str(FAKE), "--modules",
                             str(blocks))
    assert code == 2 and "--modules" in stderr


@pytest.mark.yolov5
def test_check_repo_pip_on_yolov5s_equals_our_check():
    """Acceptance: --repo on the yolov5 package gives our builder's records for yolov5s."""
    python = oracle_python()
    yaml = str(shared("yamls", "stock", "yolov5s.yaml"))
    code, theirs, _ = _check(yaml, "--repo", "pip", "--repo-python", python)
    _, ours, _ = _check(yaml)
    assert code == 0
    assert theirs["model"] == ours["model"]
    assert theirs["findings"] == ours["findings"]
