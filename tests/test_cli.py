"""The `yolodiag` command line: exit codes, one-line errors, JSON report, nothing evaluated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import TINY, shared, validate, write_yaml
from yolodiag.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_check_without_model_runs_the_bundled_example_and_says_so():
    result = invoke("check")
    assert result.exit_code == 0, result.output  # its recipe has warnings only: see test_checks.py
    assert "bundled example" in result.stdout
    assert "25 layers, 10,922,013 parameters, 115.8 GFLOPs at 640x640" in result.stdout
    assert "strides 4, 8, 16" in result.stdout


def test_bundled_json_report_marks_it_bundled():
    result = invoke("check", "--format", "json")
    report = json.loads(result.stdout)
    validate(report)
    assert report["model"]["bundled"] is True
    assert report["model"]["path"].endswith("yolov5s-resnet18.yaml")


def test_stock_yolov5s_json_report_validates_and_carries_the_numbers():
    result = invoke("check", str(shared("yamls", "stock", "yolov5s.yaml")), "--format", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    validate(report)
    model = report["model"]
    assert (model["params"], model["gflops"], model["img"]) == (7235389, 16.6, [640, 640])
    assert model["layers"][0] == {
        "index": 0, "from": -1, "n": 1, "module": "Conv", "args": [3, 32, 6, 2, 2],
        "params": 3520, "out_shape": [1, 32, 320, 320], "stride": 2, "line": 15,
        "section": "backbone", "gflops": model["layers"][0]["gflops"]}
    assert model["detect"]["strides"] == [8, 16, 32]
    assert model["detect"]["anchors_grid"][0][0] == [1.25, 1.625]
    assert report["findings"] == [] and report["exit_code"] == 0


def test_several_sizes_report_the_first_and_list_all(tmp_path):
    path = write_yaml(tmp_path, TINY)
    result = invoke("check", str(path), "--img", "640x384", "--img", "320,256", "-f", "json")
    report = json.loads(result.stdout)
    assert report["model"]["img"] == [640, 384]
    assert report["model"]["sizes"] == [[640, 384], [320, 320], [256, 256]]
    assert report["model"]["layers"][4]["out_shape"] == [1, 128, 40, 24]


def test_output_file_gets_the_report(tmp_path):
    out = tmp_path / "report.json"
    result = invoke("check", str(write_yaml(tmp_path, TINY)), "-f", "json", "-o", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    validate(json.loads(out.read_text()))


def test_unwritable_output_is_one_line_and_exit_2(tmp_path):
    result = invoke("check", str(write_yaml(tmp_path, TINY)), "-o", str(tmp_path / "no" / "r.txt"))
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "cannot write" in result.stderr


@pytest.mark.parametrize("bad", ["0", "640x", "abc", "640x384x3"])
def test_bad_img_value_is_a_usage_error(tmp_path, bad):
    result = invoke("check", str(write_yaml(tmp_path, TINY)), "--img", bad)
    assert result.exit_code == 2


def test_unknown_module_is_one_stderr_line_with_exit_2(tmp_path):
    path = write_yaml(tmp_path, TINY.replace("Conv, [64, 1, 1]", "Cnov, [64, 1, 1]"))
    result = invoke("check", str(path))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:17: layer 7 (head): YD103 unknown-module")
    assert "Traceback" not in result.output


def test_debug_adds_the_traceback(tmp_path):
    path = write_yaml(tmp_path, TINY.replace("Conv, [64, 1, 1]", "Cnov, [64, 1, 1]"))
    result = invoke("check", str(path), "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_img_not_a_multiple_of_the_stride_is_traced_rounded_up_as_yolov5_does(tmp_path):
    # At 100 the upsampled /16 map (7 -> 14) would meet a 13-wide /8 map; YOLOv5 never runs
    # 100: its check_img_size rounds it to 128, and so do we (YD305 says so).
    result = invoke("check", str(write_yaml(tmp_path, TINY)), "--img", "100", "-f", "json")
    report = json.loads(result.stdout)
    assert report["model"]["sizes"] == [[128, 128]]
    assert [f["code"] for f in report["findings"]] == ["YD305", "YD306"]
    assert result.exit_code == 0


def test_missing_file_is_bad_input(tmp_path):
    result = invoke("check", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "YD100" in result.stderr


@pytest.mark.parametrize("where", ["argument", "module", "activation"])
def test_python_in_the_yaml_is_refused_and_never_runs(tmp_path, where):
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    text = {
        "argument": TINY.replace("[64, 1, 1]", f"[\"{payload}\", 1, 1]"),
        "module": TINY.replace("Conv, [64, 1, 1]", f"\"{payload}\", [64, 1, 1]"),
        "activation": f"activation: \"{payload}\"\n" + TINY,
    }[where]
    path = write_yaml(tmp_path, text)
    for fmt in ("text", "json"):
        result = invoke("check", str(path), "--format", fmt)
        assert result.exit_code == 2
        assert "YD105" in result.stderr
    assert not marker.exists()
    # The payload does create the marker when Python runs it (as YOLOv5's eval would):
    # so the assertion above can fail.
    subprocess.run([sys.executable, "-c", payload], check=True)
    assert marker.exists()


def test_help_explain_and_rules_do_not_import_torch():
    code = ("import sys; from typer.testing import CliRunner; from yolodiag.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(app, ['check', '--help']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(app, ['gradflow', '--help']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(app, ['overfit', '--help']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(app, ['explain', 'YD301']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(app, ['explain', 'YD603']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(app, ['rules']); assert r.exit_code == 0; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_console_entry_flushes_everything_and_keeps_the_exit_code(tmp_path):
    good = subprocess.run([sys.executable, "-m", "yolodiag", "check",
                           str(write_yaml(tmp_path, TINY)), "-f", "json"],
                          capture_output=True, text=True)
    assert good.returncode == 0 and json.loads(good.stdout)["model"]["params"] > 0
    bad = subprocess.run([sys.executable, "-m", "yolodiag", "check", str(tmp_path / "nope.yaml")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "YD100" in bad.stderr


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "yolodiag", "--version"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.startswith("yolodiag ")


RUN_ONCE_YAMLS = sorted([*Path(__file__).parent.glob("examples/YD[1234]*/*.yaml"),
                         *Path(__file__).parent.glob("data/*.yaml")])


@pytest.mark.parametrize("command", [["gradflow", "--img", "64"],
                                     ["overfit", "--img", "64", "--steps", "2"]])
def test_commands_that_run_the_model_never_crash_on_the_example_yamls(command):
    """Every example and fuzz-found YAML of the structural checks: a report or a one-line
    refusal, never exit 3 or a traceback (a YD109 model once crashed gradflow)."""
    assert len(RUN_ONCE_YAMLS) > 40
    for path in RUN_ONCE_YAMLS:
        result = runner.invoke(app, [command[0], str(path), *command[1:], "-f", "json"])
        assert result.exit_code in (0, 1, 2), (path, result.stderr)
        assert "Traceback" not in result.stderr, path


def test_a_renderer_that_fails_is_an_internal_error_not_the_commands_exit_code(monkeypatch):
    """A bug in a renderer exits 3 with the one-line message, never with the command's own
    exit code and a truncated report."""
    import yolodiag.render

    def broken(result, fmt, console):
        console.print("half a report")
        raise KeyError("columns")

    monkeypatch.setattr(yolodiag.render, "render", broken)
    result = invoke("check")
    assert result.exit_code == 3, result.output
    assert "internal error: KeyError: 'columns'" in result.stderr
