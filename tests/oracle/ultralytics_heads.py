"""Run inside an interpreter that has ultralytics==8.4.190: build each head case with the real
Detect / v10Detect, perturb its state, run it on seeded random maps and save what
tests/test_ultralytics_heads.py compares. Not part of yolodiag.

argv: cases.json (a list of {"type", "args", "legacy", "stride", "sizes", "initial"}), output
.pt path. The perturbed state is rounded to fp16-representable values and saved in half (the
big heads hold millions of weights); the seeded initial state only where "initial" asks.
"""

import json
import os
import sys

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics otherwise probes the network on import

import torch  # noqa: E402
from torch import nn  # noqa: E402
from ultralytics.nn.modules.head import Detect, v10Detect  # noqa: E402

CLASSES = {"Detect": Detect, "v10Detect": v10Detect}


def perturb(head: nn.Module, seed: int) -> None:
    """Every weight and BatchNorm statistic away from its initial value (DFL's bins excepted),
    so that a mixed-up branch or statistic cannot go unnoticed; fp16-representable."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in head.state_dict().items():
            if key.startswith("dfl.") or not value.is_floating_point():
                continue
            noise = torch.randn(value.shape, generator=generator) * 0.1
            value.copy_(noise.abs() + 0.5 if key.endswith("running_var") else value + noise)
            value.copy_(value.half().float())


def run(case: dict, seed: int) -> dict:
    Detect.legacy = case["legacy"]  # 8.4.190's parse_model sets this class attribute per build
    torch.manual_seed(0)
    head = CLASSES[case["type"]](*case["args"])
    initial = {k: v.clone() for k, v in head.state_dict().items()} if case["initial"] else None
    head.stride = torch.tensor(case["stride"])
    head.bias_init()
    # The last conv of each branch is the head's only Conv2d with a bias.
    biases = {k: v.clone() for k, v in head.state_dict().items()
              if k.endswith(".bias") and not k.endswith(".bn.bias")}
    for m in head.modules():  # what the model's initialize_weights sets
        if type(m) is nn.BatchNorm2d:
            m.eps, m.momentum = 1e-3, 0.03
    perturb(head, seed)
    generator = torch.Generator().manual_seed(seed)
    maps = [torch.randn(2, c, s, s, generator=generator)
            for c, s in zip(case["args"][-1], case["sizes"])]
    state = {k: v.half() if v.is_floating_point() else v.clone()
             for k, v in head.state_dict().items()}
    result = {"initial": initial, "biases": biases, "state": state, "maps": maps}
    with torch.no_grad():
        head.eval()
        result["eval"] = head(maps)
        if getattr(head, "one2one_cv2", None) is not None:
            head.end2end = True
            result["end2end"] = head(maps)[0]
            head.end2end = False
        head.train()
        result["train"] = head(maps)
    return result


cases = json.loads(open(sys.argv[1]).read())
torch.save([run(case, seed) for seed, case in enumerate(cases)], sys.argv[2])
