"""Build one YAML with YOLOv5's own `Model(yaml)` (the yolov5 pip package, v7.0), for timing.

Run in an interpreter that has the package. `--basicblock FILE` first makes a private copy of
the package with the seed's BasicBlock appended to models/common.py and registered in
parse_model's channel-aware set, as the seed document instructs (stock YOLOv5 cannot build the
seed's YAML otherwise; tests/oracle/yolov5_patch.py makes it). The copy lives in --cache and is
reused; the installed package is never touched. Benchmark harness only: not part of yolodiag.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics otherwise probes the network on import
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "oracle"))

from yolov5_patch import patched_package  # noqa: E402  (one copy, shared with the oracle tests)


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
    from yolov5.models.yolo import Model

    model = Model(args.yaml)
    print(sum(p.numel() for p in model.parameters()))


if __name__ == "__main__":
    main()
