"""Median time of loss + backward: our `compute_loss` against YOLOv5's own ComputeLoss.

Cases: the recorded yolov5n batch of ../shared/golden (2 images at 128, 4 boxes, nc 4), and a
synthetic one (16 images at 640, nc 80, 10 random boxes per image, random raw maps of the
shapes our builder gives yolov5n). Each timed run copies the raw maps, computes the loss and
backpropagates, on CPU, in both tools, after 20 untimed warm-up runs. YOLOv5 runs as a black
box in its own interpreter (tests/oracle/yolov5_loss.py, with the `yolov5` pip package;
$YOLOV5_PYTHON names it when it is not this one) and builds its model from the same YAML.
The tools take turns (--rounds) so that a change in machine load hits both. Prints medians
(and minima), our/YOLOv5 ratio of medians, and how far the two tools' loss items are apart.
Not run by CI.

    python benchmarks/bench_loss.py [--repeat 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from yolodiag.build.builder import build
from yolodiag.dialects.yolov5.loss import HYP, compute_loss
from yolodiag.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("YOLODIAG_SHARED", ROOT.parent / "shared"))
ORACLE = ROOT / "tests" / "oracle" / "yolov5_loss.py"


def recorded_case() -> tuple[str, dict]:
    recorded = torch.load(SHARED / "golden" / "numerics" / "yolov5n.numerics.pt",
                          weights_only=True)
    return recorded["yaml"], {"name": "yolov5n golden (2x128, 4 boxes, nc 4)",
                              "nc": recorded["nc"], "hyp": recorded["hyp"],
                              "maps": recorded["train_outputs"],
                              "targets": recorded["targets"]}


def synthetic_case(yaml: str, batch: int = 16, img: int = 640, nc: int = 80,
                   per_image: int = 10) -> dict:
    built = build(parse_spec(yaml), nc=nc, device="meta")  # strides only: no weights needed
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(batch, built.model.head.na, img // int(s), img // int(s), 5 + nc,
                        generator=g) for s in built.stride]
    n = batch * per_image
    targets = torch.rand(n, 6, generator=g)
    targets[:, 0] = torch.arange(batch).repeat_interleave(per_image)
    targets[:, 1] = torch.randint(0, nc, (n,), generator=g)
    targets[:, 4:] = targets[:, 4:] * 0.4 + 0.02
    return {"name": f"synthetic ({batch}x{img}, {n} boxes, nc {nc})", "nc": nc, "hyp": dict(HYP),
            "maps": maps, "targets": targets}


def ours(built, case: dict, repeat: int) -> tuple[list[float], torch.Tensor]:
    def run():
        maps = [m.detach().clone().requires_grad_(True) for m in case["maps"]]
        loss, items = compute_loss(built, maps, case["targets"], case["hyp"])
        loss.backward()
        return items

    items = run()
    for _ in range(20):  # warm-up, as the oracle's
        run()
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds, items


def theirs(python: str, yaml_path: Path, case: dict, repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        source, dest = Path(tmp) / "in.pt", Path(tmp) / "out.pt"
        torch.save({"yaml": str(yaml_path), "nc": case["nc"],
                    "cases": [{k: case[k] for k in ("hyp", "maps", "targets")}]}, source)
        subprocess.run([python, "-W", "ignore", str(ORACLE), str(source), str(dest),
                        "--time", str(repeat)], check=True, capture_output=True,
                       env={**os.environ, "YOLO_OFFLINE": "1"})  # YOLOv5 prints its model
        return torch.load(dest, weights_only=True)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate the two tools this many times (evens out machine load)")
    args = parser.parse_args()
    python = os.environ.get("YOLOV5_PYTHON", sys.executable)
    yaml, golden = recorded_case()
    cases = [golden, synthetic_case(yaml)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; median of "
          f"{args.rounds} x {args.repeat} runs of copy + loss + backward")
    print(f"{'case':42} {'ours ms':>9} {'yolov5 ms':>10} {'ratio':>6} {'min ours/yolov5':>16} "
          f"{'items rel diff':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        yaml_path = Path(tmp) / "model.yaml"
        yaml_path.write_text(yaml)
        for case in cases:
            built = build(parse_spec(yaml), nc=case["nc"], device="meta")
            mine, other = [], []
            for _ in range(args.rounds):
                seconds, items = ours(built, case, args.repeat)
                mine += seconds
                result = theirs(python, yaml_path, case, args.repeat)
                other += result["seconds"]
            a, b = statistics.median(mine) * 1e3, statistics.median(other) * 1e3
            diff = ((items - result["items"]).abs() / result["items"].abs()).max().item()
            low = f"{min(mine) * 1e3:.2f}/{min(other) * 1e3:.2f}"
            print(f"{case['name']:42} {a:9.2f} {b:10.2f} {a / b:6.2f} {low:>16} {diff:15.2e}")


if __name__ == "__main__":
    main()
