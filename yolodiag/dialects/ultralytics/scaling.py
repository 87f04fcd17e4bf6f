"""How Ultralytics 8.4.190 turns a model name into a file, a scale and the numbers its rows are
scaled by, torch-free (the spec stage runs before anything is built).

A name such as `yolo11n.yaml` names the file `yolo11.yaml` at scale n: the scale letter after
the version is read from the name (`guess_model_scale`), and when the name's own file does not
exist, the letter is deleted from the path (`yaml_model_load`). A name without a letter builds
the first row of `scales`, which Ultralytics only says in a warning. Without `scales`, the
YAML's `depth_multiple`/`width_multiple` apply (1.0 when absent) and no width is capped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from yolodiag.findings import Location, Refused
from yolodiag.spec.model import Scaling

# The scale letter Ultralytics reads from a file's stem: lower-case `yolo`, an optional `e-`
# and `v`, the version digits, then one of n/s/m/l/x (yolov10b's `b` is not one).
_SCALE_IN_NAME = re.compile(r"yolo(e-)?[v]?\d+([nslmx])")
# What yaml_model_load deletes when the named file is absent: the letter after the first digits
# followed by one, anywhere in the path string (`yolo11n-resnet18.yaml` -> `yolo11-resnet18.yaml`).
LETTER_IN_PATH = re.compile(r"(\d+)([nslmx])(.+)?$")
_P6_ALIAS = re.compile(r"(\d+)([nslmx])6(.+)?$")
_FAMILY = re.compile(r"yolo(v?\d+)")
DEFAULT_REG_MAX = 16


def scale_in_name(name: str | Path) -> str:
    """The scale letter Ultralytics reads from the name, or "" (yolo11.yaml, yolov9t.yaml)."""
    found = _SCALE_IN_NAME.search(Path(name).stem)
    return found.group(2) if found else ""


def family_of(name: str | Path) -> str:
    """The stock family a name belongs to ("yolo11", "yolov8"), "" when it names none."""
    found = _FAMILY.search(Path(name).stem)
    return f"yolo{found.group(1)}" if found else ""


def family_title(name: str | Path) -> str:
    """"YOLO11", "YOLOv8"; "the model" for a name of no stock family."""
    family = family_of(name)
    return "YOLO" + family[4:] if family else "the model"


def locate(path: str | Path) -> tuple[Path, str] | None:
    """The file Ultralytics reads for a name whose own file does not exist: `yolov5nu` is
    `yolov5n`, the P6 alias (`yolov8s6` -> `yolov8s-p6`), then the scale letter deleted from
    the path. None when none exists."""
    path = Path(path)
    tried = []
    if ("yolov3" in path.stem or "yolov5" in path.stem) and path.stem.endswith("u"):
        path = path.with_name(path.stem[:-1] + path.suffix)  # yolov5nu: the u models' name
    if path.stem in {f"yolov{v}{s}6" for s in "nsmlx" for v in (5, 8)}:
        path = path.with_name(_P6_ALIAS.sub(r"\1\2-p6\3", path.stem) + path.suffix)
        tried.append(path)
    tried.append(Path(LETTER_IN_PATH.sub(r"\1\3", str(path))))
    for candidate in tried:
        if candidate.is_file():
            return candidate, (f"{Path(path).name} names {candidate.name} at scale "
                               f"{scale_in_name(path) or 'none'}, as Ultralytics resolves it")
    return None


def read_scaling(data: dict, file: str, named: str, requested: str | None,
                 line_of: Callable[[str], int | None]) -> Scaling:
    """The depth, width, channel cap and scale letter Ultralytics' parse_model builds the rows
    with, and the top-level keys it reads (reg_max, end2end). `named` is the name the user
    passed (its scale letter counts), `file` the file read. Raises Refused (YD101 for
    malformed values, YD113 for a scale the table does not have)."""
    options = _options(data, file, line_of)
    letter = scale_in_name(named)
    scales = data.get("scales")
    if scales is None:
        depth, width = (_positive(data, key, file, line_of) for key in
                        ("depth_multiple", "width_multiple"))
        scale = requested or letter
        source = "flag" if requested else "name" if letter else ""
        return Scaling(depth, width, math.inf, scale, source,
                       f"{family_title(named)} without a `scales` table: depth {depth:g}, "
                       f"width {width:g}" + (f", scale letter {scale}" if scale else ""),
                       options)
    rows = _scale_rows(scales, file, line_of("scales"))
    if requested:
        scale, source, why = requested, "flag", f"from --scale {requested}"
    elif letter:
        scale, source, why = letter, "name", f"from the file name {Path(named).name}"
    elif len(rows) == 1:
        scale, source, why = next(iter(rows)), "only", "the only row of `scales`"
    else:
        scale, source = next(iter(rows)), "first"
        why = (f"the file name {Path(named).name} has no scale letter: Ultralytics assumes "
               f"the first, with only a warning")
    if scale not in rows:
        raise Refused("YD113", f"scale '{scale}' ({why}) is not in `scales`, which has "
                      f"{', '.join(rows)}: Ultralytics' parse_model fails with KeyError",
                      f"use one of {', '.join(rows)} (e.g. name the file with it, or --scale)",
                      Location(file, line_of("scales")))
    depth, width, max_channels = rows[scale]
    return Scaling(depth, width, max_channels, scale, source,
                   f"{family_title(named)} at scale {scale} ({why}): depth {depth:g}, width "
                   f"{width:g}, max_channels {max_channels:g}", options)


def _scale_rows(scales: Any, file: str, line: int | None) -> dict[str, tuple[float, ...]]:
    where = Location(file, line)
    if not isinstance(scales, dict) or not scales:
        raise Refused("YD101", f"`scales` must map scale letters to [depth, width, "
                      f"max_channels], got {scales!r}", "write e.g. `n: [0.50, 0.25, 1024]`",
                      where)
    rows = {}
    for key, row in scales.items():
        if not (isinstance(row, list) and len(row) == 3 and all(_number(v) and v > 0
                                                                   for v in row)):
            raise Refused("YD101", f"`scales` row {key!r} must be three positive numbers "
                          f"[depth, width, max_channels], got {row!r}",
                          "write e.g. `n: [0.50, 0.25, 1024]`", where)
        rows[str(key)] = tuple(row)
    return rows


def _positive(data: dict, key: str, file: str, line_of) -> float:
    value = data.get(key, 1.0)
    if not _number(value) or value <= 0:
        raise Refused("YD101", f"`{key}` must be a positive number, got {value!r}",
                      f"set `{key}:` (1.0 keeps the YAML as written)",
                      Location(file, line_of(key)))
    return value


def _options(data: dict, file: str, line_of) -> tuple[tuple[str, Any], ...]:
    reg_max = data.get("reg_max", DEFAULT_REG_MAX)
    if not (isinstance(reg_max, int) and not isinstance(reg_max, bool) and reg_max >= 1):
        raise Refused("YD101", f"`reg_max` must be a positive integer, got {reg_max!r}",
                      "remove `reg_max:` (16 bins) or set it to 1 (no DFL) or more",
                      Location(file, line_of("reg_max")))
    end2end = data.get("end2end")
    if end2end is not None and not isinstance(end2end, bool):
        raise Refused("YD101", f"`end2end` must be True or False, got {end2end!r}",
                      "write `end2end: True` or remove the key",
                      Location(file, line_of("end2end")))
    return (("reg_max", reg_max), ("end2end", end2end))  # None without the key, as read there


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)
