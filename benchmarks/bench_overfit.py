"""overfit's training step against YOLOv5's own, and steps to pass for healthy models.

Step time: the same YAML, seeded weights, synthetic batch (256x256, batch 2) and SGD settings,
on the CPU. Ours is `overfit`'s own per-step time (forward, loss, backward, clip, optimiser step;
evaluations left out) in a run that never evaluates and never passes; YOLOv5's is its `Model` +
`ComputeLoss` + the same optimiser step, timed by tests/oracle/yolov5_train_step.py in the
interpreter $YOLOV5_PYTHON names (with the `yolov5` pip package). Both: the median of the steps
after 3 untimed ones.
The two take turns for --rounds so that machine load hits both. Steps to pass: `overfit` with
its defaults. Prints medians. Not run by CI.

    YOLOV5_PYTHON=/path/to/python python benchmarks/bench_overfit.py [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from yolodiag.loss import HYP, train_hyp
from yolodiag.overfit import FitSettings, overfit
from yolodiag.reference.builder import build
from yolodiag.spec import load_spec
from yolodiag.synthetic import synthetic_batch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("YOLODIAG_SHARED", ROOT.parent / "shared"))
ORACLE = ROOT / "tests" / "oracle" / "yolov5_train_step.py"
MODELS = ("stock/yolov5n.yaml", "stock/yolov5s.yaml")


def ours(path: Path, images, targets, steps: int) -> float:
    """Median step time after 3 untimed steps of the same run, as the oracle measures."""
    torch.manual_seed(0)
    built = build(load_spec(path))
    never = FitSettings(steps=steps + 3, eval_every=10**9, pass_mark=2.0)
    history = overfit(built, images, targets, never)
    return statistics.median(s.seconds for s in history.steps[3:])


def theirs(python: str, path: Path, images, targets, nc: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        batch, out = Path(folder) / "batch.pt", Path(folder) / "out.pt"
        hyp = train_hyp(HYP, nc, images.shape[-1], 3)
        torch.save({"yaml": str(path), "nc": nc, "hyp": hyp, "images": images,
                    "targets": targets}, batch)
        subprocess.run([python, str(ORACLE), str(batch), str(out), "--steps", str(steps),
                        "--warmup", "3"], check=True)
        return statistics.median(torch.load(out, weights_only=True)["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    python = os.environ.get("YOLOV5_PYTHON", sys.executable)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, 256x256, batch 2, "
          f"{args.steps} timed steps per round, {args.rounds} rounds")
    for name in MODELS:
        path = SHARED / "yamls" / name
        nc = load_spec(path).nc
        images, targets = synthetic_batch(nc, 256, 2, 0)
        mine, yolov5 = [], []
        for _ in range(args.rounds):
            mine.append(ours(path, images, targets, args.steps))
            yolov5.append(theirs(python, path, images, targets, nc, args.steps))
        a, b = statistics.median(mine), statistics.median(yolov5)
        print(f"{path.name:14s} yolodiag {a * 1000:7.1f} ms/step   YOLOv5 {b * 1000:7.1f} "
              f"ms/step   ratio {a / b:.2f}x")


if __name__ == "__main__":
    main()
