"""Run inside an interpreter that has the `yolov5` pip package (v7.0): YOLOv5's own ComputeLoss on
the cases in argv[1] (yaml path, nc, and per case hyp, raw maps, targets); saves loss, items and
the gradient on each raw map to argv[2]. Used as a black box by tests and benchmarks; not part of
yolodiag.

With `--time N` it also times N loss+backward runs per case (after 20 untimed ones, as warm-up)
and saves the seconds of each.
"""

import os
import sys
import time

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics otherwise probes the network on import

import torch  # noqa: E402
from yolov5.models.yolo import Model  # noqa: E402
from yolov5.utils.loss import ComputeLoss  # noqa: E402


def run(compute, maps, targets):
    preds = [p.detach().clone().requires_grad_(True) for p in maps]
    loss, items = compute(preds, targets)
    loss.backward()
    return loss.detach(), items, [p.grad for p in preds]


def main() -> None:
    source, dest = sys.argv[1], sys.argv[2]
    repeat = int(sys.argv[sys.argv.index("--time") + 1]) if "--time" in sys.argv else 0
    inp = torch.load(source, weights_only=True)
    model = Model(inp["yaml"], nc=inp["nc"])
    out = []
    for case in inp["cases"]:
        model.hyp = dict(case["hyp"])
        compute = ComputeLoss(model)
        loss, items, grads = run(compute, case["maps"], case["targets"])
        for _ in range(20 if repeat else 0):
            run(compute, case["maps"], case["targets"])
        seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            run(compute, case["maps"], case["targets"])
            seconds.append(time.perf_counter() - start)
        out.append({"loss": loss, "items": items, "grads": grads, "seconds": seconds})
    torch.save(out, dest)


if __name__ == "__main__":
    main()
