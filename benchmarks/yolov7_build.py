"""Build one YAML with YOLOv7's own `Model(yaml)` (a checkout of WongKinYiu/yolov7), for timing.

Run in an interpreter that can import the checkout (benchmarks/make_yolov7_venv.sh makes one):
`python yolov7_build.py --repo CHECKOUT YAML`. The checkout goes first on sys.path, as YOLOv7's
own scripts have it when run from the checkout. Benchmark harness only: not part of yolodiag.
"""

import argparse
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("yaml")
    parser.add_argument("--repo", type=Path, required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(args.repo.resolve()))
    from models.yolo import Model

    model = Model(str(Path(args.yaml).resolve()))
    print(sum(p.numel() for p in model.parameters()))


if __name__ == "__main__":
    main()
