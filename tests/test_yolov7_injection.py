"""A YOLOv7 YAML carrying a Python expression is refused, and the expression never runs.

YOLOv7's parse_model evaluates every module name and every string argument with Python's eval,
so a YAML row such as `[-1, 1, SP, ["__import__('os').system(...)"]]` runs arbitrary code in
YOLOv7's train.py. yolodiag reads the same YAML through closed tables: each expression below,
placed in one position of the stock yolov7-tiny (read as YOLOv7: MP, SP, IDetect), would write a
marker file if anything evaluated it. The CLI runs in a subprocess, as a user runs it: exit 2,
one line on stderr naming the file, the line and (for a row) the layer, a JSON report holding
only that refusal and no model, and no marker file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, shared

STOCK = ("yamls", "yolov7", "stock", "training", "yolov7-tiny.yaml")


def _payload(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).write_text('ran')"


# position -> (text of the stock YAML, its replacement with {e} the expression, YAML line,
# layer or None for a top-level key, finding code)
POSITIONS = {
    "argument": ("[-1, 1, SP, [5]]", '[-1, 1, SP, ["{e}"]]', 55, 31, "YD105"),
    "activation argument": ("[-1, 1, SP, [5]]",
                            '[-1, 1, Conv, [64, 1, 1, None, 1, "nn.LeakyReLU({e})"]]', 55, 31,
                            "YD105"),
    "module name": ("[-1, 1, MP, []]", '[-1, 1, "{e}", []]', 26, 8, "YD105"),
    "from": ("[-1, 1, MP, []]", '["{e}", 1, MP, []]', 26, 8, "YD102"),
    "number": ("[-1, 1, MP, []]", '[-1, "{e}", MP, []]', 26, 8, "YD102"),
    "head argument": ("IDetect, [nc, anchors]", 'IDetect, [nc, "{e}"]', 111, 77, "YD105"),
    "nc": ("nc: 80", 'nc: "{e}"', 2, None, "YD101"),
    "depth_multiple": ("depth_multiple: 1.0", 'depth_multiple: "{e}"', 3, None, "YD101"),
    "anchors": ("anchors:\n", 'anchors: "{e}"\nunread:\n', 7, None, "YD101"),
}


def _injected(tmp_path: Path, position: str) -> tuple[Path, Path]:
    """(YAML path, marker path): the stock yolov7-tiny with the expression in one position."""
    stock, injected, *_ = POSITIONS[position]
    text = shared(*STOCK).read_text(encoding="utf-8")
    assert text.count(stock) >= 1, f"the stock YAML no longer holds {stock!r}"
    marker = tmp_path / "marker"
    path = tmp_path / "injected.yaml"
    # The payload's quotes are single, so a double-quoted YAML string holds it unchanged.
    path.write_text(text.replace(stock, injected.format(e=_payload(marker)), 1),
                    encoding="utf-8")
    return path, marker


def _run(*args: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    return subprocess.run([sys.executable, "-m", "yolodiag", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": path})


def test_the_payload_writes_its_marker_when_evaluated(tmp_path):
    """What YOLOv7's eval would do with it: the marker the tests look for is a real effect."""
    marker = tmp_path / "marker"
    subprocess.run([sys.executable, "-c", f"eval({_payload(marker)!r})"], check=True)
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("position", POSITIONS)
def test_injected_expression_is_refused_in_one_line_and_never_runs(tmp_path, position):
    path, marker = _injected(tmp_path, position)
    *_, line, layer, code = POSITIONS[position]
    done = _run("check", str(path), "-f", "json")
    assert done.returncode == 2, done.stdout + done.stderr
    assert not marker.exists()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    where = f"{path}:{line}: " + (f"layer {layer} " if layer is not None else "")
    assert lines[0].startswith(where), (where, lines[0])
    assert f" {code} " in lines[0]
    report = json.loads(done.stdout)  # the refusal, and no model: nothing was built
    assert report["model"] is None and report["exit_code"] == 2
    assert [(f["code"], f["location"]["line"], f["location"]["layer"])
            for f in report["findings"]] == [(code, line, layer)]


def test_injected_yaml_is_read_as_yolov7_and_refused_by_every_command(tmp_path):
    """The refusal is the spec reader's, before any stage: gradflow and overfit refuse alike,
    and --dialect yolov7 changes nothing."""
    path, marker = _injected(tmp_path, "argument")
    for args in (["check", str(path), "--dialect", "yolov7"], ["gradflow", str(path)],
                 ["overfit", str(path), "--steps", "1"]):
        done = _run(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "YD105" in done.stderr and "YOLOv7 would evaluate" in done.stderr
        assert not marker.exists()
