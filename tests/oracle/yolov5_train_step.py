"""Run inside an interpreter that has the `yolov5` pip package (v7.0): time YOLOv5's own training
step (train-mode forward, ComputeLoss, backward, gradient clipping at 10, SGD step with train.py's
three parameter groups) on the batch in argv[1]; saves the seconds of each timed step to argv[2].
Used as a black box by benchmarks/bench_overfit.py; not part of yolodiag.

    python yolov5_train_step.py batch.pt out.pt --steps 20 --warmup 5 [--basicblock FILE]
"""

import os
import sys
import time

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics otherwise probes the network on import

if "--basicblock" in sys.argv:  # the seed's BasicBlock models: a patched copy of the package
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from yolov5_patch import patched_package  # noqa: E402

    sys.path.insert(0, str(patched_package(sys.argv[sys.argv.index("--basicblock") + 1],
                                           "/tmp/yolodiag-bench")))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from yolov5.models.yolo import Model  # noqa: E402
from yolov5.utils.loss import ComputeLoss  # noqa: E402


def optimizer_for(model, lr, momentum, decay):
    norms, weights, biases = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias":
                biases.append(p)
            elif isinstance(module, nn.modules.batchnorm._NormBase):
                norms.append(p)
            else:
                weights.append(p)
    optimizer = torch.optim.SGD(norms, lr=lr, momentum=momentum, nesterov=True)
    optimizer.add_param_group({"params": weights, "weight_decay": decay})
    optimizer.add_param_group({"params": biases})
    return optimizer


def main() -> None:
    source, dest = sys.argv[1], sys.argv[2]
    steps = int(sys.argv[sys.argv.index("--steps") + 1])
    warmup = int(sys.argv[sys.argv.index("--warmup") + 1])
    inp = torch.load(source, weights_only=True)
    torch.manual_seed(0)
    model = Model(inp["yaml"], nc=inp["nc"])
    model.hyp = dict(inp["hyp"])
    compute = ComputeLoss(model)
    optimizer = optimizer_for(model, 0.01, 0.937, 5e-4)
    images, targets = inp["images"], inp["targets"]
    seconds = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        model.train()
        loss, _ = compute(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
        optimizer.step()
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
    torch.save({"seconds": seconds}, dest)


if __name__ == "__main__":
    main()
