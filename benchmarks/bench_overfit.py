"""overfit --batch 1: wall time to a verdict, before and after a change, and the training step
against YOLOv5's own.

Verdict: `python -m yolodiag overfit MODEL --batch 1 -f json` as a whole process (import, check,
build, training, evaluations), for the bundled seed, stock yolov5n and the fixed ResNet-18
recipe; with `--before DIR` (a checkout of an earlier yolodiag, e.g. `git worktree add ../before
<commit>`) the same command from that tree runs in turn, so that machine load hits both.
Step time: the same YAML, seeded weights, batch (overfit's own, 256x256, batch 1) and SGD
settings on the CPU. Ours is `overfit`'s per-step time (forward, loss, backward, clip, optimiser
step; evaluations left out) in a run that never evaluates and never passes; YOLOv5's is its
`Model` + `ComputeLoss` + the same optimiser step, timed by tests/oracle/yolov5_train_step.py in
the interpreter $YOLOV5_PYTHON names (the `yolov5` pip package; BasicBlock models through
tests/oracle/yolov5_patch.py). Both: the median of the steps after 3 untimed ones. Prints
medians over --rounds. Not run by CI.

    YOLOV5_PYTHON=/path/to/python python benchmarks/bench_overfit.py [--before ../before]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from yolodiag import commands
from yolodiag.build.builder import build
from yolodiag.dialects.yolov5.loss import HYP, train_hyp
from yolodiag.overfit import FitSettings, overfit
from yolodiag.spec import load_spec
from yolodiag.synthetic import synthetic_batch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("YOLODIAG_SHARED", ROOT.parent / "shared"))
ORACLE = ROOT / "tests" / "oracle" / "yolov5_train_step.py"
BASICBLOCK = SHARED / "yamls" / "resnet18" / "basicblock_seed.py"
MODELS = {"seed": commands.BUNDLED_MODEL, "yolov5n": SHARED / "yamls" / "stock" / "yolov5n.yaml",
          "fixed": SHARED / "yamls" / "resnet18" / "yolov5s-resnet18-fixed.yaml"}
SIZE = commands.OVERFIT_SIZE


def to_verdict(tree: Path, path: Path) -> dict:
    """One `overfit --batch 1` process from `tree`: wall seconds, how it ended, at which step."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "report.json"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "yolodiag", "overfit", str(path), "--batch", "1",
                        "-f", "json", "-o", str(out)], cwd=folder, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(tree)})
        wall = time.perf_counter() - start
        fit = json.loads(out.read_text())["overfit"]
    ended = fit.get("stopped") or ("passed" if fit["passed_at"] is not None else "budget")
    return {"wall": wall, "ended": ended, "steps": len(fit["steps"]),
            "positives": fit["positives_per_level"]}


def ours(path: Path, images, targets, steps: int) -> float:
    """Median step time after 3 untimed steps of the same run, as the oracle measures."""
    torch.manual_seed(0)
    built = build(load_spec(path))
    never = FitSettings(steps=steps + 3, eval_every=10**9, pass_mark=2.0, flat_steps=10**9)
    history = overfit(built, images, targets, never)
    return statistics.median(s.seconds for s in history.steps[3:])


def theirs(python: str, path: Path, images, targets, nc: int, nl: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        batch, out = Path(folder) / "batch.pt", Path(folder) / "out.pt"
        hyp = train_hyp(HYP, nc, images.shape[-1], nl)
        torch.save({"yaml": str(path), "nc": nc, "hyp": hyp, "images": images,
                    "targets": targets}, batch)
        subprocess.run([python, str(ORACLE), str(batch), str(out), "--steps", str(steps),
                        "--warmup", "3", "--basicblock", str(BASICBLOCK)], check=True)
        return statistics.median(torch.load(out, weights_only=True)["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="a checkout of an earlier yolodiag")
    args = parser.parse_args()
    python = os.environ.get("YOLOV5_PYTHON", sys.executable)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    trees = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    for name, path in MODELS.items():
        for label, tree in trees.items():
            run = to_verdict(tree, path)
            print(f"{name:8s} {label:6s} verdict in {run['wall']:6.1f} s: {run['ended']} after "
                  f"{run['steps']} steps, positives per level {run['positives']}", flush=True)
    print(f"step time at {SIZE[0]}x{SIZE[1]}, batch 1: median of {args.steps} steps after 3, "
          f"{args.rounds} rounds")
    for name, path in MODELS.items():
        torch.manual_seed(0)
        built = build(load_spec(path))
        images, targets = synthetic_batch(built.nc, SIZE, 1, 0,
                                            anchors=built.pixel_anchors)
        mine, yolov5 = [], []
        for _ in range(args.rounds):
            mine.append(ours(path, images, targets, args.steps))
            yolov5.append(theirs(python, path, images, targets, built.nc, len(built.stride),
                                 args.steps))
        a, b = statistics.median(mine), statistics.median(yolov5)
        print(f"{name:8s} yolodiag {a * 1000:7.1f} ms/step   YOLOv5 {b * 1000:7.1f} ms/step   "
              f"ratio {a / b:.2f}x", flush=True)


if __name__ == "__main__":
    main()
