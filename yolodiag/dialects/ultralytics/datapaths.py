"""Where Ultralytics 8.4.190 looks for a data YAML's splits (data/utils.py: check_det_dataset):
a relative `path:` is taken as it stands when that exists from the working directory, else
joined to the `datasets_dir` setting; an absolute one as written; without `path:` the YAML's
own folder. The splits are then `path / entry`, an entry starting with `../` retried without
it (as YOLOv5 does). `datasets_dir` comes from Ultralytics' settings.json ($YOLO_CONFIG_DIR,
else $XDG_CONFIG_HOME or ~/.config, then Ultralytics/), written when Ultralytics first runs;
without one, the default a pip-installed Ultralytics writes there: `datasets` in the working
directory (a git checkout of Ultralytics puts it beside the checkout instead). Reads files;
torch-free.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def settings_file() -> Path:
    base = os.getenv("YOLO_CONFIG_DIR")
    folder = Path(base).expanduser() if base else Path(
        os.getenv("XDG_CONFIG_HOME") or Path.home() / ".config")
    return folder / "Ultralytics" / "settings.json"


def datasets_dir() -> tuple[Path, str]:
    """The datasets_dir setting and where it came from, in words."""
    file = settings_file()
    try:
        value = json.loads(file.read_text(encoding="utf-8")).get("datasets_dir")
    except (OSError, ValueError, AttributeError):
        value = None
    if isinstance(value, str) and value:
        return Path(value).expanduser(), f"datasets_dir {value} (from {file})"
    default = (Path.cwd() / "datasets").resolve()
    return default, (f"datasets_dir {default} (the default of a pip-installed Ultralytics, "
                     f"`datasets` in the working directory: no {file} here)")


def resolve(data_yaml: Path, written: str) -> tuple[Path, str]:
    """(the folder the splits are resolved in, how Ultralytics chose it)."""
    if not written:
        return data_yaml.resolve().parent, "as the data YAML's own folder (no `path:`)"
    path = Path(written)
    if path.is_absolute():
        return path, "as written (absolute)"
    if path.exists():
        return path.resolve(), f"from the working directory ({Path.cwd()})"
    folder, origin = datasets_dir()
    return ((folder / path).resolve(), f"from the working directory ({Path.cwd()}), where it "
            f"does not exist, then under {origin}")
