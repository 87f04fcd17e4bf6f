"""Overfit's training step on an Ultralytics model against the real package's: one train-mode
forward, the loss, backward, gradient clipping at 10 and an AdamW step, same YAML, image size,
batch and targets (yolo11n at nc 80, 256x256, batch 1, 4 objects; torch on 2 threads; the median
of 20 steps after 3 untimed, for each of `--rounds` fresh processes per side). The real side runs
`DetectionModel(yaml)` with its `init_criterion()` (v8DetectionLoss) in $ULTRALYTICS_PYTHON
(benchmarks/make_ultralytics_venv.sh); ours runs the dialect's loss and optimiser. Not run by CI.

    ULTRALYTICS_PYTHON=... python benchmarks/bench_ultralytics_step.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
YAML = ROOT / "tests" / "shared" / "yamls" / "ultralytics" / "stock" / "yolo11n.yaml"
TARGETS = ("[[0, 1, 0.3, 0.3, 0.2, 0.2], [0, 2, 0.6, 0.6, 0.4, 0.3], "
           "[0, 3, 0.5, 0.4, 0.6, 0.5], [0, 4, 0.2, 0.7, 0.1, 0.15]]")
TIMED = """
import statistics, time, torch
torch.set_num_threads(2)
times = []
for i in range(23):
    start = time.perf_counter()
    {step}
    times.append(time.perf_counter() - start)
print(statistics.median(times[3:]))
"""
OURS = f"""
from yolodiag.spec import load_spec
from yolodiag.build.builder import build
from yolodiag.dialects.ultralytics import loss
torch.manual_seed(0)
built = build(load_spec({str(YAML)!r}), nc=80)
model = built.model.train()
images, targets = torch.rand(1, 3, 256, 256), torch.tensor({TARGETS})
optimizer, _ = loss.optimizer(model, None, 80, 1)
def step():
    total, _ = loss.compute_loss(built, model(images), targets, loss.HYP)
    optimizer.zero_grad(); total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0); optimizer.step()
"""
THEIRS = f"""
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel
torch.manual_seed(0)
model = DetectionModel("yolo11n.yaml", nc=80, verbose=False)
model.args = get_cfg()
criterion = model.init_criterion()
rows = torch.tensor({TARGETS})
images = torch.rand(1, 3, 256, 256)
batch = {{"batch_idx": rows[:, 0], "cls": rows[:, 1:2], "bboxes": rows[:, 2:6]}}
optimizer = torch.optim.AdamW(model.parameters(), lr=0.000119)
model.train()
def step():
    total, _ = criterion(model(images), batch)
    optimizer.zero_grad(); total.sum().backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0); optimizer.step()
"""


def median_step(python: str, setup: str) -> float:
    code = "import torch\n" + setup + TIMED.format(step="step()")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    if out.returncode:
        sys.exit(out.stderr[-2000:])
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    theirs_python = os.environ.get("ULTRALYTICS_PYTHON")
    if not theirs_python:
        sys.exit("set ULTRALYTICS_PYTHON to an interpreter that imports ultralytics==8.4.190")
    ours = statistics.median(median_step(sys.executable, OURS) for _ in range(rounds))
    theirs = statistics.median(median_step(theirs_python, THEIRS) for _ in range(rounds))
    print(f"training step, yolo11n 256x256 batch 1: yolodiag {ours * 1000:.1f} ms, "
          f"ultralytics {theirs * 1000:.1f} ms, ratio {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
