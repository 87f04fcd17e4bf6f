"""A private copy of a YOLOv7 checkout (WongKinYiu/yolov7 at a207844) that knows the seed's
BasicBlock, as the seed document tells a user to register it: the class appended to
models/common.py and its name added at the end of parse_model's first (channel-aware) module
list, not to the repeat-insert list nested in it. The copy lives in `cache` (reused once made);
the checkout is never touched. Used by the live tests marked `yolov7` and by the benchmark; runs
no YOLOv7 code and copies none into yolodiag.
"""

import shutil
from pathlib import Path

# The end of parse_model's module lists at a207844: the channel-aware list comes first.
MARKER = "ST2CSPA, ST2CSPB, ST2CSPC]:"


def patched_checkout(checkout: Path, basicblock: Path, cache: Path) -> Path:
    """A copy of `checkout` whose models/ know BasicBlock; returns the copy's folder."""
    target = Path(cache) / "yolov7-basicblock"
    if not target.exists():
        yolo = Path(checkout) / "models" / "yolo.py"
        text = yolo.read_text()
        if MARKER not in text:
            raise SystemExit(f"yolov7_patch.py: unexpected YOLOv7 version in {checkout} "
                             "(parse_model's channel-aware list not found)")
        partial = target.with_name(target.name + ".part")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(checkout, partial, ignore=shutil.ignore_patterns(
            "__pycache__", ".git", "paper", "figure", "inference", "runs"))
        common = partial / "models" / "common.py"
        common.write_text(common.read_text() + "\n\n" + Path(basicblock).read_text())
        (partial / "models" / "yolo.py").write_text(
            text.replace(MARKER, "ST2CSPA, ST2CSPB, ST2CSPC, BasicBlock]:", 1))
        partial.rename(target)
    return target
