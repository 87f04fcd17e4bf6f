"""A stand-in for an Ultralytics checkout's ultralytics/nn/tasks.py, written for yolodiag's tests
(not taken from Ultralytics): `DetectionModel(cfg, ch, nc)` builds the YAML with yolodiag's own
Ultralytics builder and presents it as Ultralytics' model does (`.model` the layers, each
carrying `i`, `f`, `type` and `np`; `.stride`; a forward that routes each layer's `from`).
`parse_model` below is only ever parsed by the registration tests, never run: its branches have
the shapes the reader maps (sets bound to names, a nested repeat set, an `is not` guard, a
scale-letter tweak, the heads) and two it cannot (a rewritten argument, a halved width).

The block classes are imported into this module's namespace because `--repo` records
constructor arguments by wrapping the classes it finds here, as Ultralytics' tasks.py has them.
"""

# ruff: noqa: F403, F405, F821 - the star imports stand for tasks.py's own; the parsed-only
# parse_model names classes no module defines

import torch
from torch import nn

from yolodiag.build.builder import DetectionNet, build
from yolodiag.dialects.ultralytics.area_attention import *
from yolodiag.dialects.ultralytics.attention import *
from yolodiag.dialects.ultralytics.block import *
from yolodiag.dialects.ultralytics.conv import *
from yolodiag.dialects.ultralytics.elan import *
from yolodiag.dialects.ultralytics.heads import Detect, v10Detect
from yolodiag.dialects.yolov5.seed import BasicBlock  # noqa: F401 - the seed's recipe
from yolodiag.spec import load_spec


class DetectionModel(DetectionNet):
    def __init__(self, cfg, ch=3, nc=None, verbose=True):
        built = build(load_spec(cfg, dialect="ultralytics"), nc=nc)
        super().__init__(list(built.model.model), built.model.froms)
        for layer, record in zip(self.model, built.layers):
            from_ = list(record.from_) if isinstance(record.from_, tuple) else record.from_
            layer.i, layer.f, layer.type, layer.np = record.index, from_, record.module, \
                record.params
        self.stride = torch.tensor(built.stride)
        self.model[-1].anchors = torch.empty(0)  # where Ultralytics' head keeps anchor points


def parse_model(d, ch, verbose=True):
    legacy, scale, width, max_channels = True, d.get("scale"), 0.25, 1024
    reg_max, end2end = d.get("reg_max", 16), d.get("end2end")
    base = frozenset({Conv, Gate, Stem, C2f, C3k2, Mixer})
    repeating = frozenset({C2f, C3k2, Mixer})
    for f, n, m, args in d["backbone"] + d["head"]:
        if m in base:
            c1, c2 = ch[f], args[0]
            if m is not Stem:
                c2 = make_divisible(min(c2, max_channels) * width, 8)
            args = [c1, c2, *args[1:]]
            if m in repeating:
                args.insert(2, n)
                n = 1
            if m is C3k2:
                legacy = False
                if scale in {"m", "l", "x"}:
                    args[3:4] = [True]
            if m is Mixer:
                args[3] = c2 // 4
        elif m is nn.BatchNorm2d:
            args = [ch[f]]
        elif m is Concat:
            c2 = sum(ch[x] for x in f)
        elif m in frozenset({Detect, Segment}):
            args.extend([reg_max, end2end, [ch[x] for x in f]])
            if m is Detect:
                m.legacy = legacy
        elif m is v10Detect:
            args.append([ch[x] for x in f])
        elif m is CBLinear:
            c2, c1 = args[0], ch[f]
            args = [c1, c2, *args[1:]]
        elif m is CBFuse:
            c2 = ch[f[-1]]
        elif m is Halve:
            c2 = ch[f] // 2
        else:
            c2 = ch[f]
        ch.append(c2)
    return ch
