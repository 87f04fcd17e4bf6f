"""Build one YAML with the real `DetectionModel(yaml)` of ultralytics==8.4.190, for timing.

Run in an interpreter that has the package (benchmarks/make_ultralytics_venv.sh makes one):
`python ultralytics_build.py YAML`. The name resolves as Ultralytics resolves it
(`.../yolo11x.yaml` is yolo11.yaml at scale x). `--basicblock FILE` builds from a private copy
of the package that knows the seed's BasicBlock, made as the golden recorder set it up (see
../shared/golden/README.md): the class placed in `ultralytics.nn.modules.block` and added to
parse_model's channel-completion set `base_modules`, as a user editing tasks.py does. The copy
lives in --cache and is reused; the installed package is never touched. Ultralytics is
AGPL-3.0: this harness only runs it, beside yolodiag, never inside it. Not part of yolodiag.
"""

import argparse
import importlib.util
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # otherwise the package probes the network on import
BASE_MODULES = "    base_modules = frozenset(\n        {\n"  # parse_model's opening, 8.4.190


def patched_package(basicblock: Path, cache: Path) -> Path:
    """A copy of the installed ultralytics package that knows BasicBlock; returns its parent."""
    root = cache / "ultralytics-basicblock"
    target = root / "ultralytics"
    if not target.exists():
        source = Path(importlib.util.find_spec("ultralytics").origin).parent
        tasks = (source / "nn" / "tasks.py").read_text()
        if BASE_MODULES not in tasks:
            raise SystemExit(f"ultralytics_build.py: unexpected ultralytics version in {source} "
                             "(parse_model's base_modules not found)")
        staging = root / "staging"
        shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted copy
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__"))
        block = staging / "nn" / "modules" / "block.py"
        block.write_text(block.read_text() + "\n\n" + basicblock.read_text())
        (staging / "nn" / "tasks.py").write_text(
            tasks.replace(BASE_MODULES, BASE_MODULES + "            BasicBlock,\n", 1)
            + "\nfrom ultralytics.nn.modules.block import BasicBlock\n")
        staging.rename(target)  # only a finished copy is ever reused
    return root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("yaml")
    parser.add_argument("--basicblock", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/yolodiag-bench"))
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    if args.basicblock:
        sys.path.insert(0, str(patched_package(args.basicblock, args.cache)))
    if args.prepare_only:
        return
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(args.yaml)
    print(sum(p.numel() for p in model.parameters()))


if __name__ == "__main__":
    main()
