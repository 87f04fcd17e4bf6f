"""Run inside an interpreter that has ultralytics==8.4.190: build each requested block of
`ultralytics.nn.modules.block` and save what the oracle tests compare. Not part of yolodiag.

Usage: python ultralytics_attention.py REQUEST OUT. REQUEST (torch.save'd) holds `cases`, a list of
{"id", "type", "args", "n", "repeat_in_args"}, and `inputs`, {id: tensor or list of tensors}.
OUT gets {id: {"state": state dict before any forward, "eval": output in eval mode, "train":
output in train mode (after the eval one, from the same weights)}}. BatchNorm statistics and
affine terms and A2C2f's gamma are drawn at random first: at their initial values (mean 0, var 1,
gamma 0.01) the eval outputs would hardly depend on them.
"""

import os
import sys

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics otherwise probes the network on import

import torch  # noqa: E402
from torch import nn  # noqa: E402
from ultralytics.nn.modules import block  # noqa: E402


def build(case: dict) -> nn.Module:
    cls = getattr(block, case["type"])
    if case["n"] > 1 and not case["repeat_in_args"]:
        return nn.Sequential(*(cls(*case["args"]) for _ in range(case["n"])))
    return cls(*case["args"])


def perturb(module: nn.Module, generator: torch.Generator) -> None:
    def draw(tensor: torch.Tensor, low: float, high: float) -> None:
        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)

    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm2d):
                draw(layer.running_mean, -0.5, 0.5)
                draw(layer.running_var, 0.5, 2.0)
                draw(layer.weight, 0.5, 1.5)
                draw(layer.bias, -0.5, 0.5)
            if isinstance(getattr(layer, "gamma", None), nn.Parameter):
                draw(layer.gamma, 0.5, 1.5)


request = torch.load(sys.argv[1], weights_only=True)
out = {}
for case in request["cases"]:
    torch.manual_seed(0)
    module = build(case)
    perturb(module, torch.Generator().manual_seed(2))
    state = {k: v.clone() for k, v in module.state_dict().items()}
    x = request["inputs"][case["id"]]
    with torch.no_grad():
        evaluated = module.eval()(x)
        trained = module.train()(x)
    out[case["id"]] = {"state": state, "eval": evaluated, "train": trained}
torch.save(out, sys.argv[2])
