"""A user's own block (--modules) on an Ultralytics YAML, under each rule a user can declare.

The rules carry the shared names (channels, input...); on Ultralytics each must do
what its parse_model does with a block placed in that set or branch. Measured on the stock
yolo11.yaml at scale n (width 0.25) with layer 10, `[-1, 2, C2PSA, [1024]]` (input 256 wide),
replaced by a row of the user's block.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import shared
from yolodiag.cli import app

BLOCKS = '''
class Widen(nn.Module):
    def __init__(self, c1, c2, k=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k)

    def forward(self, x):
        return self.conv(x)


class Keep(nn.Module):
    def __init__(self, channels, reduction=4):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return self.conv(x)
'''
STOCK_ROW = "[-1, 2, C2PSA, [1024]]"

runner = CliRunner()


def _layer_10(tmp_path: Path, row: str, *rules: str) -> tuple[dict, dict]:
    """(layer 10 of the report, the report) with `row` in place of C2PSA's."""
    text = shared("yamls", "ultralytics", "stock", "yolo11.yaml").read_text(encoding="utf-8")
    assert STOCK_ROW in text
    path = tmp_path / "yolo11n.yaml"
    path.write_text(text.replace(STOCK_ROW, row), encoding="utf-8")
    modules = tmp_path / "blocks.py"
    modules.write_text(BLOCKS, encoding="utf-8")
    args = ["check", str(path), "--img", "256", "-f", "json", "--modules", str(modules)]
    result = runner.invoke(app, [*args, *(a for r in rules for a in ("--rule", r))])
    assert result.exit_code in (0, 1), result.stdout + result.stderr
    report = json.loads(result.stdout)
    return report["model"]["layers"][10], report


@pytest.mark.parametrize("row, rules, args, width", [
    # Inferred from (c1, c2): base_modules, so 1024 is capped at max_channels and scaled.
    ("[-1, 1, Widen, [1024, 3]]", (), [256, 256, 3], 256),
    ("[-1, 1, Widen, [1024, 3]]", ("Widen=channels",), [256, 256, 3], 256),
    ("[-1, 1, Keep, [2]]", ("Keep=input",), [256, 2], 256),
    ("[-1, 1, Keep, [256]]", (), [256], 256),  # the fallback: raw arguments, width kept
])
def test_declared_rule_completes_the_row_as_ultralytics_does(tmp_path, row, rules, args, width):
    layer, report = _layer_10(tmp_path, row, *rules)
    assert layer["args"] == args
    assert layer["out_shape"][1] == width
    assert not [f for f in report["findings"] if f["code"] == "YD202"]
