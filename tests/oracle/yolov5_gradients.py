"""Run inside an interpreter that has the `yolov5` pip package (v7.0): for each YAML in the input,
build it with torch.manual_seed(0), run one train-mode forward of the batch, YOLOv5's own
ComputeLoss with the given hyp, one backward, and save each top-level layer's gradient norm and
the loss items. Used as a black box by tests/test_yolov5_oracle.py; not part of yolodiag.

    python yolov5_gradients.py cases.pt out.pt
"""

import os
import sys

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics otherwise probes the network on import

import torch  # noqa: E402
from yolov5.models.yolo import Model  # noqa: E402
from yolov5.utils.loss import ComputeLoss  # noqa: E402


def main() -> None:
    cases = torch.load(sys.argv[1], weights_only=True)
    out = {}
    for name, case in cases.items():
        torch.manual_seed(0)
        model = Model(case["yaml"])
        model.hyp = dict(case["hyp"])
        model.train()
        loss, items = ComputeLoss(model)(model(case["images"]), case["targets"])
        loss.backward()
        norms = [sum(float((p.grad.double() ** 2).sum()) for p in layer.parameters()
                     if p.grad is not None) ** 0.5 for layer in model.model]
        out[name] = {"loss": float(loss), "items": items, "norms": norms}
    torch.save(out, sys.argv[2])


if __name__ == "__main__":
    main()
