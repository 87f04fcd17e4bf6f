"""The channel rules a YOLOv5 checkout's `parse_model` gives its classes, read statically with the
family-neutral reader (`dialects/common/registration.py`, which explains how); YOLOv5's
parse_model has no output-width expression of its own beyond the shared ones.
"""

from __future__ import annotations

from pathlib import Path

from yolodiag.dialects.common import registration
from yolodiag.dialects.common.registration import Registration

__all__ = ["Registration", "find_checkout", "read_registration"]


def find_checkout(file: str | Path) -> Path | None:
    """The checkout a file belongs to: the nearest folder at or above it holding models/yolo.py."""
    return registration.find_checkout(file)


def read_registration(root: str | Path) -> Registration:
    """The rules of `<root>/models/yolo.py`'s parse_model (none when it defines no parse_model).
    Raises Unsupported naming the file and line when yolo.py is not valid Python."""
    return registration.read_registration(root)
