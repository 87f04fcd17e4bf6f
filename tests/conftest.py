"""Test helpers. `../shared` (golden figures, stock YAMLs) is reached through `shared()` only:
tests that need it skip with a clear reason when it is absent; the core tests do not need it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("YOLODIAG_SHARED", ROOT.parent / "shared"))


def shared(*parts: str) -> Path:
    """Path inside ../shared (or $YOLODIAG_SHARED); skips the test when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the project's ../shared folder, or set YOLODIAG_SHARED)")
    return path


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
