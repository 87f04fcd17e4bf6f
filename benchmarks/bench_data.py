"""How long `--data` takes to read a dataset: labels, image sizes, and `check --data` as a whole.

Writes a synthetic YOLO dataset of N 640x480 PNG images with 4 labels each into a temporary
folder (train and val the same folder, so every label file is read twice, as YOLOv5 reads both
splits), then times `read_data`, the anchor fit's image sizes and a whole `yolodiag check
--data` of stock yolov5s against the same check without --data, each the median of --rounds.
Not run by CI.

    python benchmarks/bench_data.py [--images 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from yolodiag.data import box_sizes, read_data

YOLOV5S = Path(__file__).resolve().parents[2] / "shared" / "yamls" / "stock" / "yolov5s.yaml"


def write_dataset(root: Path, images: int) -> Path:
    from PIL import Image

    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    picture, rng = Image.new("RGB", (640, 480), (90, 90, 90)), random.Random(0)
    for i in range(images):
        picture.save(root / "images" / "train" / f"{i:05d}.png")
        rows = "".join(f"{rng.randrange(3)} 0.5 0.5 {rng.uniform(0.05, 0.5):.4f} "
                       f"{rng.uniform(0.05, 0.5):.4f}\n" for _ in range(4))
        (root / "labels" / "train" / f"{i:05d}.txt").write_text(rows)
    data = root / "data.yaml"
    # absolute: v7.0 resolves a relative `path:` against the YOLOv5 root, not this folder
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames: [a, b, c]\n")
    return data


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = write_dataset(Path(folder), args.images)
        check = [sys.executable, "-m", "yolodiag", "check", str(YOLOV5S)]
        timings: dict[str, list[float]] = {"read_data": [], "image sizes": [],
                                           "check": [], "check --data": []}
        for _ in range(args.rounds):
            timings["read_data"].append(seconds(lambda: read_data(data)))
            split = read_data(data).splits["train"]
            timings["image sizes"].append(seconds(lambda s=split: box_sizes(s, 640)))
            timings["check"].append(seconds(lambda: subprocess.run(check, capture_output=True)))
            timings["check --data"].append(seconds(lambda: subprocess.run(
                [*check, "--data", str(data)], capture_output=True)))
    print(f"{args.images} images, 4 labels each (train = val), median of {args.rounds}:")
    for name, values in timings.items():
        print(f"  {name:14} {statistics.median(values):7.2f} s")


if __name__ == "__main__":
    main()
