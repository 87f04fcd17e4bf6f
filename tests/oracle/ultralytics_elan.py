"""Run inside an interpreter that has the `ultralytics` pip package (8.4.190): build each case's
block from `ultralytics.nn.modules.block` and save what tests/test_ultralytics_elan.py compares.
Not part of yolodiag.

Usage: ultralytics_elan.py CASES.json OUT.pt. Each case is {"id", "type", "args", "inputs"};
`inputs` is a shape (a list of ints) or a list of inputs, each a shape or a list of shapes (a
tuple of maps, as CBLinear returns). Per case OUT holds the state dict (BatchNorm affine
parameters and statistics perturbed so they matter), the random input, the eval-mode output,
the train-mode output and the buffers after that train-mode forward (moved statistics).
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics otherwise probes the network on import

import torch  # noqa: E402
from torch import nn  # noqa: E402
from ultralytics.nn.modules import block  # noqa: E402


def random_input(spec, generator):
    if all(isinstance(size, int) for size in spec):
        return torch.randn(spec, generator=generator)
    return [random_input(part, generator) for part in spec]


def detached(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return [detached(part) for part in value]


def perturb_norms(module, generator):
    # Fresh BatchNorms are identities in eval mode; random statistics make them count.
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, nn.BatchNorm2d):
                size = norm.num_features
                norm.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                norm.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                norm.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                norm.running_var.copy_(torch.rand(size, generator=generator) + 0.5)


def record(case):
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    module = getattr(block, case["type"])(*case["args"])
    perturb_norms(module, generator)
    state = {key: value.clone() for key, value in module.state_dict().items()}
    x = random_input(case["inputs"], generator)
    with torch.no_grad():
        evaluated = detached(module.eval()(x))
        trained = detached(module.train()(x))
    moved = {key: value.clone() for key, value in module.named_buffers()}
    return {"state": state, "input": x, "eval": evaluated, "train": trained,
            "buffers_after_train": moved}


cases = json.loads(Path(sys.argv[1]).read_text())
torch.save({case["id"]: record(case) for case in cases}, sys.argv[2])
