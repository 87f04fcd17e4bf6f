"""A private copy of the installed `yolov5` pip package (v7.0) that knows the seed's BasicBlock.

Stock YOLOv5 cannot build the seed's YAML: the seed document appends its BasicBlock to
models/common.py and adds it to parse_model's channel-aware set. `patched_package` does exactly
that to a copy in `cache` (reused once made); the installed package is never touched. Put the
returned folder first on sys.path before anything imports `yolov5`. Shared by the oracle
scripts in this folder and benchmarks/yolov5_build.py; runs in the oracle's interpreter, not
part of yolodiag.
"""

import importlib.util
import shutil
from pathlib import Path

MARKER = "DWConvTranspose2d, C3x}:"  # the end of parse_model's channel-aware set in v7.0


def patched_package(basicblock: Path, cache: Path) -> Path:
    """A copy of the installed yolov5 package that knows BasicBlock; returns its parent folder."""
    root = Path(cache) / "yolov5-basicblock"
    target = root / "yolov5"
    if not target.exists():
        source = Path(importlib.util.find_spec("yolov5").origin).parent
        yolo = source / "models" / "yolo.py"
        text = yolo.read_text()
        if MARKER not in text:
            raise SystemExit(f"yolov5_patch.py: unexpected yolov5 version in {source} "
                             "(parse_model's channel-aware set not found)")
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        common = target / "models" / "common.py"
        common.write_text(common.read_text() + "\n\n" + Path(basicblock).read_text())
        (target / "models" / "yolo.py").write_text(
            text.replace(MARKER, "DWConvTranspose2d, C3x, BasicBlock}:", 1))
    return root
