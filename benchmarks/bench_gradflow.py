"""gradflow's cost against a bare forward and backward of the same model and batch, one process.

For each model (default: the bundled seed and yolov5s; --device cuda on a GPU machine) the same
seeded weights and synthetic batch (256x256, batch 2) are timed, taking turns per round so that
a change in machine load hits every variant:

- bare:       train-mode forward, YOLOv5's loss, backward (what a training step computes);
- probe pass: the same forward under gradflow's hooks and torch-function mode, and the same
              backward with its tensor hooks: the instrumentation's own overhead;
- measure:    gradflow's measurement without the ablation: the probe pass, then the box, obj and
              cls terms backpropagated one at a time, and the residual split;
- gradflow:   all of it, including the second forward and backward with every shortcut removed.

Prints medians and their ratio to bare. Not run by CI.

    python benchmarks/bench_gradflow.py [--repeat 7] [--device cpu] [MODEL.yaml ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from yolodiag.build.builder import build
from yolodiag.commands import BUNDLED_MODEL
from yolodiag.dialects.yolov5.loss import compute_loss
from yolodiag.gradflow import _Probe, measure, preserved
from yolodiag.spec import load_spec
from yolodiag.synthetic import synthetic_batch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("YOLODIAG_SHARED", ROOT.parent / "shared"))


def variants(built, images, targets):
    net = built.model

    def bare():
        with preserved(net):
            net.train()
            loss, _ = compute_loss(built, net(images), targets)
            loss.backward()

    def probe_pass():
        with preserved(net):
            net.train()
            with _Probe(net, tuple(images.shape[-2:])):
                raw = net(images)
            loss, _ = compute_loss(built, raw, targets)
            loss.backward()

    return {"bare": bare, "probe pass": probe_pass,
            "measure": lambda: measure(built, images, targets, ablate=False),
            "gradflow": lambda: measure(built, images, targets)}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--img", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    models = args.models or [BUNDLED_MODEL, SHARED / "yamls" / "stock" / "yolov5s.yaml"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{args.img}x{args.img}, batch {args.batch}, median of {args.repeat}")
    for path in models:
        torch.manual_seed(0)
        built = build(load_spec(path), device=args.device)
        images, targets = synthetic_batch(built.nc, args.img, args.batch, 0, device=args.device)
        runs = variants(built, images, targets)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for run in runs.values():  # warm-up
            run()
        for _ in range(args.repeat):
            for name, run in runs.items():
                sync(args.device)
                start = time.perf_counter()
                run()
                sync(args.device)
                times[name].append(time.perf_counter() - start)
        bare = statistics.median(times["bare"])
        print(f"\n{Path(path).name}")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"  {name:11s} {median * 1000:9.1f} ms   {median / bare:5.2f}x bare")


if __name__ == "__main__":
    main()
