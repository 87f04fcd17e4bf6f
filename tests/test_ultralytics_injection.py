"""An Ultralytics YAML carrying a Python expression is refused, and the expression never runs.

Ultralytics 8.4.190's parse_model looks module names up in its globals and evaluates string
arguments (`ast.literal_eval` first, then the name), and reads `activation:` through its own
restricted evaluation; a YAML from the internet is code to whoever trusts those steps. yolodiag
reads the same YAML through closed tables: each expression below, placed in one position of the
stock yolo11.yaml, would write a marker file if anything evaluated it. `yolodiag check` runs in
process: exit 2, one line on stderr naming the file, the line and (for a row) the layer, a JSON
report holding only that refusal and no model, and no marker file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import shared
from yolodiag.cli import app

STOCK = ("yamls", "ultralytics", "stock", "yolo11.yaml")


def _payload(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).write_text('ran')"


# position -> (text of the stock YAML, its replacement with {e} the expression, YAML line,
# layer or None for a top-level key, finding code)
POSITIONS = {
    "argument": ("[-1, 1, SPPF, [1024, 5]]", '[-1, 1, SPPF, [1024, "{e}"]]', 29, 9, "YD105"),
    "activation argument": ("[-1, 1, SPPF, [1024, 5]]",
                            '[-1, 1, Conv, [1024, 1, 1, None, 1, 1, "nn.SiLU({e})"]]', 29, 9,
                            "YD105"),
    "module name": ("[-1, 2, C2PSA, [1024]]", '[-1, 2, "{e}", [1024]]', 30, 10, "YD105"),
    "head argument": ("Detect, [nc]", 'Detect, ["{e}"]', 50, 23, "YD105"),
    "activation key": ("nc: 80\n", 'nc: 80\nactivation: "{e}"\n', 9, None, "YD105"),
    # A malformed `scales` row is reported at the `scales:` line.
    "scales value": ("n: [0.50, 0.25, 1024]", 'n: ["{e}", 0.25, 1024]', 9, None, "YD101"),
    "reg_max": ("nc: 80\n", 'nc: 80\nreg_max: "{e}"\n', 9, None, "YD101"),
    "end2end": ("nc: 80\n", 'nc: 80\nend2end: "{e}"\n', 9, None, "YD101"),
    "nc": ("nc: 80\n", 'nc: "{e}"\n', 8, None, "YD101"),
}

runner = CliRunner()


def _injected(tmp_path: Path, position: str) -> tuple[Path, Path]:
    """(YAML path, marker path): the stock yolo11 with the expression in one position."""
    stock, injected, *_ = POSITIONS[position]
    text = shared(*STOCK).read_text(encoding="utf-8")
    assert stock in text, f"the stock YAML no longer holds {stock!r}"
    marker = tmp_path / "marker"
    path = tmp_path / "injected.yaml"
    # The payload's quotes are single, so a double-quoted YAML string holds it unchanged.
    path.write_text(text.replace(stock, injected.format(e=_payload(marker)), 1),
                    encoding="utf-8")
    return path, marker


def test_the_payload_writes_its_marker_when_evaluated(tmp_path):
    """What an evaluating parser would do with it: the marker looked for is a real effect."""
    marker = tmp_path / "marker"
    subprocess.run([sys.executable, "-c", f"eval({_payload(marker)!r})"], check=True)
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("position", POSITIONS)
def test_injected_expression_is_refused_in_one_line_and_never_runs(tmp_path, position):
    path, marker = _injected(tmp_path, position)
    *_, line, layer, code = POSITIONS[position]
    result = runner.invoke(app, ["check", str(path), "-f", "json"])
    assert result.exit_code == 2, result.stdout + result.stderr
    assert not marker.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    where = f"{path}:{line}: " + (f"layer {layer} " if layer is not None else "")
    assert lines[0].startswith(where), (where, lines[0])
    assert f" {code} " in lines[0]
    report = json.loads(result.stdout)  # the refusal, and no model: nothing was built
    assert report["model"] is None and report["exit_code"] == 2
    assert [(f["code"], f["location"]["line"], f["location"]["layer"])
            for f in report["findings"]] == [(code, line, layer)]


def test_an_expression_as_a_scale_letter_is_only_a_name(tmp_path):
    """Ultralytics looks scale letters up in `scales` and never evaluates them: yolodiag builds
    the row under that key (the first, the file name having no letter), and nothing runs."""
    marker = tmp_path / "marker"
    text = shared(*STOCK).read_text(encoding="utf-8")
    path = tmp_path / "injected.yaml"
    path.write_text(text.replace("n: [0.50, 0.25, 1024]",
                                 f'"{_payload(marker)}": [0.50, 0.25, 1024]', 1), encoding="utf-8")
    result = runner.invoke(app, ["check", str(path), "-f", "json", "--img", "256"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert not marker.exists()
    scale = json.loads(result.stdout)["model"]["dialect"]["scale"]
    assert (scale["letter"], scale["width_multiple"]) == (_payload(marker), 0.25)


def test_injected_yaml_is_refused_by_every_command_and_at_any_scale(tmp_path):
    """The refusal is the spec reader's, before any stage: gradflow and overfit refuse alike,
    and --dialect ultralytics or --scale changes nothing."""
    path, marker = _injected(tmp_path, "argument")
    for args in (["check", str(path), "--dialect", "ultralytics"],
                 ["check", str(path), "--scale", "x"], ["gradflow", str(path)],
                 ["overfit", str(path), "--steps", "1"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.stdout + result.stderr)
        assert "YD105" in result.stderr and "never evaluates" in result.stderr
        assert not marker.exists()
