"""Where YOLOv5 v7.0 looks for a data YAML's splits, and where the user probably meant them.

v7.0's `check_dataset` (utils/general.py), as measured by running it on crafted data YAMLs:

- `path` absent or empty is the YOLOv5 root; a relative `path` is `(ROOT / path).resolve()`,
  where ROOT is the YOLOv5 checkout's own folder (the folder of train.py, or of the pip
  package): not the data YAML's folder, and not the working directory. An absolute `path` is
  kept as written. So the common `path: .  # relative to this file` is the YOLOv5 root.
- A `train`/`val`/`test` string is `(path / entry).resolve()` (an absolute entry stays itself);
  when that does not exist and the entry starts with `../`, the entry without that prefix is
  taken instead. A list is each `(path / item).resolve()`, without that fallback.
- Every `val` entry must exist, or it stops with "Dataset not found" before anything is built
  (a `download:` key is run instead). `train` is not checked there: train.py's loader stops on
  it ("Error loading data from ...: ... does not exist"). train.py never reads `test`.
- On Linux a backslash is part of a file name and `C:` is a relative name: a Windows path
  (`C:\\data\\shapes`, `images\\train`) resolves to a folder that does not exist.

yolodiag does not know the YOLOv5 root; its callers pass it (`--repo DIR`, a run's checkout)
and it defaults to the working directory, where train.py is normally run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPLITS = ("train", "val", "test")
STOPS_TRAINING = ("train", "val")  # a missing entry of these stops train.py before epoch 1
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Entry:
    """One split entry: as written, and the path it resolves to."""

    written: str
    target: Path


@dataclass(frozen=True)
class Located:
    """v7.0's reading of the paths, and the reading the data checks use."""

    yolov5_root: Path  # the YOLOv5 root assumed
    root_given: bool  # False: the working directory stood in for it
    written: str  # `path:` as written ('' when absent)
    yolov5_base: Path  # where v7.0 resolves the entries
    yolov5_entries: dict[str, tuple[Entry, ...]]
    base: Path  # what the checks resolved against
    entries: dict[str, tuple[Entry, ...]]  # what the checks read
    windows: tuple[str, ...]  # written values that are Windows paths (on a POSIX system)
    # How the family resolved `path:`, in words, where it is not YOLOv5's root (Ultralytics':
    # the working directory, then its datasets_dir); "" for the root's reading.
    rule: str = ""

    @property
    def as_meant(self) -> bool:
        """True when the checks read the data YAML's folder reading, v7.0's finding nothing."""
        return self.entries != self.yolov5_entries

    def not_found(self, split: str) -> tuple[Entry, ...]:
        """The entries of a split v7.0 does not find."""
        return tuple(e for e in self.yolov5_entries.get(split, ()) if not e.target.exists())

    def as_dict(self) -> dict[str, Any]:
        return {"yolov5_root": str(self.yolov5_root), "root_given": self.root_given,
                "path": self.written, "yolov5_path": str(self.yolov5_base),
                "read_as": "data-yaml-folder" if self.as_meant else "yolov5",
                "not_found": {name: [str(e.target) for e in self.not_found(name)]
                              for name in self.yolov5_entries if self.not_found(name)},
                "windows": list(self.windows), "rule": self.rule}


def split_entries(data: dict, name: str) -> tuple[str, ...]:
    """A split's entries as written (a string is one entry)."""
    value = data.get(name)
    if not value:
        return ()
    return (str(value),) if isinstance(value, str) else tuple(map(str, value))


def locate(data_yaml: Path, data: dict, root: str | Path | None = None,
           resolve_path=None) -> Located:
    """Resolve `path` and the splits as v7.0 does against `root` (default: the working
    directory), or as `resolve_path(data_yaml, written)` -> (base, the rule in words) says
    (another family's reading of `path:`); where that would not find train or val but the data
    YAML's own folder (with backslashes read as separators) holds them all, the checks read
    that instead."""
    yolov5_root = Path.cwd() if root is None else Path(root).expanduser().resolve()
    written = str(data.get("path") or "")
    yolov5_base, rule = (_base(written, yolov5_root), "") if resolve_path is None else \
        resolve_path(data_yaml, written)
    yolov5 = _resolve(data, yolov5_base, lambda text: text)
    windows = () if os.sep == "\\" else tuple(
        text for text in (written, *(e for name in SPLITS for e in split_entries(data, name)))
        if "\\" in text or _DRIVE.match(text))
    base, entries = yolov5_base, yolov5
    if any(not e.target.exists() for name in STOPS_TRAINING for e in yolov5.get(name, ())):
        meant_base = _base(written.replace("\\", "/"), data_yaml.resolve().parent)
        meant = _resolve(data, meant_base, lambda text: text.replace("\\", "/"))
        found = all(e.target.exists() for name in STOPS_TRAINING for e in meant.get(name, ()))
        if found and meant != yolov5:
            base, entries = meant_base, meant
    return Located(yolov5_root, root is not None, written, yolov5_base, yolov5, base, entries,
                   windows, rule)


def _base(written: str, root: Path) -> Path:
    path = Path(written)
    return path if path.is_absolute() else (root / path).resolve()


def _resolve(data: dict, base: Path, spelled) -> dict[str, tuple[Entry, ...]]:
    resolved = {}
    for name in SPLITS:
        value = data.get(name)
        if not value:
            continue
        if isinstance(value, str):
            text = spelled(value)
            target = (base / text).resolve()
            if not target.exists() and text.startswith("../"):
                target = (base / text[3:]).resolve()
            resolved[name] = (Entry(value, target),)
        else:
            resolved[name] = tuple(Entry(str(v), (base / spelled(str(v))).resolve())
                                   for v in value)
    return resolved
