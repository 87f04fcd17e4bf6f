"""A stand-in for a YOLOv5 checkout whose code fails to build a YAML, written for yolodiag's
tests: `parse_model` raises NameError at a row naming a module it does not know (as an `eval` of
an unknown name would), and a `Boom` row builds but raises when the model's first forward (the
stride probe in YOLOv5) runs it. Each layer carries its row index `i`, as YOLOv5's do.
"""

import torch
import yaml
from torch import nn

KNOWN = {"Conv", "C3", "Concat", "nn.Upsample", "Detect", "Boom"}


class Row(nn.Module):
    """One built row; passes its input through, except a `Boom` row, which raises."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        if self.module == "Boom":
            raise RuntimeError("Boom cannot run")
        return x


def parse_model(d, ch):
    layers = []
    for i, (f, _n, m, _args) in enumerate(d["backbone"] + d["head"]):
        if m not in KNOWN:
            raise NameError(f"name {m!r} is not defined")
        layer = Row(m)
        layer.i, layer.f, layer.type, layer.np = i, f, m, 0
        layers.append(layer)
    return nn.Sequential(*layers)


class DetectionModel(nn.Module):
    def __init__(self, cfg, ch=3, nc=None):
        super().__init__()
        with open(cfg, encoding="utf-8") as f:
            self.model = parse_model(yaml.safe_load(f), [ch])
        x = torch.zeros(1, ch, 32, 32)
        for layer in self.model:  # stands for YOLOv5's stride probe
            x = layer(x)
