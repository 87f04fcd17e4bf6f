"""The channel rules a YOLOv7 checkout's `parse_model` gives its classes, read statically with the
family-neutral reader (`dialects/common/registration.py`, which explains how), plus the output
widths only YOLOv7's parse_model computes: Shortcut's first input and ReOrg's four-fold input.
"""

from __future__ import annotations

from pathlib import Path

from yolodiag.dialects.common import registration
from yolodiag.dialects.common.registration import Registration
from yolodiag.dialects.yolov7.repo import is_checkout

__all__ = ["Registration", "find_checkout", "read_registration"]

WIDTHS = (("ch[f[0]]", "shortcut"), ("ch[f] * 4", "reorg"))


def find_checkout(file: str | Path) -> Path | None:
    """The YOLOv7 checkout a file belongs to: the nearest folder at or above it whose
    models/yolo.py is YOLOv7's (see repo.is_checkout)."""
    return registration.find_checkout(file, is_checkout)


def read_registration(root: str | Path) -> Registration:
    """The rules of `<root>/models/yolo.py`'s parse_model (none when it defines no parse_model).
    Raises Unsupported naming the file and line when yolo.py is not valid Python."""
    return registration.read_registration(root, WIDTHS)
