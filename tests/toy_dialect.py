"""A toy second dialect, defined here and nowhere in yolodiag: its own module table (two
blocks), its own channel rules and an anchor-free head. tests/test_dialects.py registers it to
prove that a family needs one registered value and no edit of shared code."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import torch
from torch import nn

from yolodiag.build.plan import Completion, ModuleEntry, RuleError
from yolodiag.dialects import Dialect


class ToyConv(nn.Module):
    """3x3 convolution and ReLU: `ToyConv(c1, c2, s)`."""

    def __init__(self, c1: int, c2: int, s: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 3, s, 1)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x))


class ToyHead(nn.Module):
    """Anchor-free: one 1x1 convolution per level to (4 box values + nc scores) per cell."""

    def __init__(self, nc: int, ch: list[int]):
        super().__init__()
        self.nc, self.nl = nc, len(ch)
        self.m = nn.ModuleList(nn.Conv2d(c, nc + 4, 1) for c in ch)
        self.register_buffer("stride", torch.ones(self.nl), persistent=False)

    def forward(self, xs):
        return [conv(x) for conv, x in zip(self.m, xs)]

    def raw_maps(self, out):
        return out

    def assemble(self, out, training: bool):
        return out if training else (torch.cat([o.flatten(2) for o in out], 2), out)


def _conv(r):
    if not isinstance(r.from_, int):
        raise RuleError("takes one input")
    return Completion((r.ch[r.from_], *r.args), r.args[0], r.number)


def _head(r):
    return Completion((r.args[0], [r.ch[f] for f in r.from_]), r.previous_c2, 1)


def _measure_head(net, spec, records, device):
    """Strides from one forward of zeros; no anchors, no priors."""
    if not records or records[-1].rule != "head":
        return None, None, False
    with torch.no_grad():
        maps = net.model[-1].raw_maps(net.run_layers(torch.zeros(1, spec.ch, 64, 64,
                                                                 device=device)))
    strides = tuple(64 / m.shape[-2] for m in maps)
    if device.type != "meta":
        net.model[-1].stride.copy_(torch.tensor(strides))
    return strides, None, False


def _sniff(data):
    rows = [r for key in ("backbone", "head") if isinstance(data, dict)
            and isinstance(data.get(key), list) for r in data[key]]
    names = {r[2] for r in rows if isinstance(r, list) and len(r) == 4}
    return "its head is ToyHead" if "ToyHead" in names else None


HERE = __name__
TOY = Dialect(
    name="toy",
    title="Toy",
    version="v0",
    modules={"ToyConv": ModuleEntry("ToyConv", f"{HERE}:ToyConv", "conv"),
             "ToyHead": ModuleEntry("ToyHead", f"{HERE}:ToyHead", "head")},
    rules={"conv": _conv, "head": _head},
    activations=("ReLU",),
    required_keys=(),
    head_rules=frozenset({"head"}),
    head_outputs=lambda spec, nc: nc + 4,
    sniff=_sniff,
    model=SimpleNamespace(PROBE_SIZE=64, activation_scope=lambda factory: contextlib.nullcontext(),
                          measure_head=_measure_head, initialize_weights=lambda net: None),
    advice={"block": "ToyConv"},
)

TOY_YAML = """\
# A toy-family model: three stride-2 convolutions, two levels into an anchor-free head.
nc: 3
backbone:
  - [-1, 1, ToyConv, [16, 2]]   # 0: stride 2
  - [-1, 1, ToyConv, [32, 2]]   # 1: stride 4
  - [-1, 1, ToyConv, [64, 2]]   # 2: stride 8
  - [-1, 1, ToyConv, [128, 2]]  # 3: stride 16
head:
  - [[2, 3], 1, ToyHead, [nc]]  # 4
"""
