"""Live oracle for tests/test_ultralytics_blocks.py (and any test of single Ultralytics modules):
run in an interpreter that imports ultralytics==8.4.190, never by yolodiag itself.

    YOLO_OFFLINE=1 python ultralytics_modules.py cases.json out.pt

cases.json holds a list of {"id", "type", "args", "copies", "input", "cv1_activated"?}. For
each case the real class of that name in ultralytics.nn.modules.block is built from `args`
after torch.manual_seed(0) (`copies` > 1: an nn.Sequential of that many, as parse_model builds
a non-repeat row with n > 1); SPPF's cv1 gets the default activation when `cv1_activated`, as
parse_model gives it. Every BatchNorm's affine parameters and running statistics are then
moved off their initial values (a generator seeded 1), so eval mode exercises them. out.pt maps
each id to {"state": that state dict, "input": a random tensor of shape `input`, "eval": the
eval-mode output, "train": the train-mode output of the same input, computed after "eval"}.
"""

from __future__ import annotations

import json
import sys

import torch
from torch import nn
from ultralytics.nn.modules import block
from ultralytics.nn.modules.conv import Conv


def build(case: dict) -> nn.Module:
    cls = getattr(block, case["type"])
    torch.manual_seed(0)
    copies = [cls(*case["args"]) for _ in range(case["copies"])]
    module = copies[0] if len(copies) == 1 else nn.Sequential(*copies)
    if case.get("cv1_activated"):
        module.cv1.act = Conv.default_act
    return module


def perturb_batch_norms(module: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, nn.BatchNorm2d):
                size = norm.num_features
                norm.weight.copy_(1 + 0.2 * (torch.rand(size, generator=generator) - 0.5))
                norm.bias.copy_(0.2 * (torch.rand(size, generator=generator) - 0.5))
                norm.running_mean.copy_(0.2 * (torch.rand(size, generator=generator) - 0.5))
                norm.running_var.copy_(0.5 + torch.rand(size, generator=generator))


def run(case: dict) -> dict:
    module = build(case)
    generator = torch.Generator().manual_seed(1)
    perturb_batch_norms(module, generator)
    state = {key: value.clone() for key, value in module.state_dict().items()}
    x = torch.randn(case["input"], generator=generator)
    with torch.no_grad():
        eval_out = module.eval()(x)
        train_out = module.train()(x)
    return {"state": state, "input": x, "eval": eval_out, "train": train_out}


def main(cases_path: str, out_path: str) -> None:
    with open(cases_path) as handle:
        cases = json.load(handle)
    torch.save({case["id"]: run(case) for case in cases}, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
