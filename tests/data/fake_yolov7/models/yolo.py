"""A stand-in for a YOLOv7 checkout's models/yolo.py, written for yolodiag's tests (not taken
from YOLOv7): `Model(cfg, ch, nc)` builds the YAML with yolodiag's own YOLOv7 builder and
presents it as YOLOv7's model does (`.model` the layers, each carrying `i`, `f`, `type` and `np`;
`.stride`; a forward that routes each layer's `from`). `parse_model` below is only ever parsed
by the registration tests: its branches have the shapes of YOLOv7's (a channel-aware list with
a nested repeat list, Shortcut's and ReOrg's widths, a width no rule mirrors), never run.

The block classes are imported into this module's namespace because `--repo` records
constructor arguments by wrapping the classes it finds here, as YOLOv7's yolo.py has them.
"""

import torch
from torch import nn

from yolodiag.build.builder import build
from yolodiag.dialects.yolov7.blocks import *  # noqa: F403
from yolodiag.dialects.yolov7.csp import *  # noqa: F403
from yolodiag.dialects.yolov7.heads import Detect, IAuxDetect, IDetect  # noqa: F401
from yolodiag.spec import load_spec


class Model(nn.Module):
    def __init__(self, cfg, ch=3, nc=None, anchors=None):
        super().__init__()
        built = build(load_spec(cfg, dialect="yolov7"), nc=nc)
        self.model = built.model.model
        for layer, record in zip(self.model, built.layers):
            from_ = list(record.from_) if isinstance(record.from_, tuple) else record.from_
            layer.i, layer.f, layer.type, layer.np = record.index, from_, record.module, \
                record.params
        self.stride = torch.tensor(built.stride)

    def forward(self, x):
        outputs = []  # every layer's output; `from` counts back from the current layer
        for layer in self.model:
            if layer.f != -1:
                x = outputs[layer.f] if isinstance(layer.f, int) else [
                    x if j == -1 else outputs[j] for j in layer.f]
            x = layer(x)
            outputs.append(x)
        head = self.model[-1]
        return head.assemble(x, self.training) if hasattr(head, "assemble") else x


def parse_model(d, ch):
    widths, layers = list(ch), []
    for f, n, m, args in d["backbone"] + d["head"]:
        if m in [nn.Conv2d, Conv, RepConv, Gate, SPPCSPC, BottleneckCSPA]:  # noqa: F405
            c1, c2 = ch[f], args[0]
            if c2 != 255:
                c2 = round(c2 * d["width_multiple"])
            args = [c1, c2, *args[1:]]
            if m in [SPPCSPC, BottleneckCSPA]:  # noqa: F405
                args.insert(2, n)
                n = 1
        elif m is nn.BatchNorm2d:
            args = [ch[f]]
        elif m is Concat:  # noqa: F405
            c2 = sum([ch[x] for x in f])
        elif m is Shortcut:  # noqa: F405
            c2 = ch[f[0]]
        elif m is Halve:  # noqa: F405
            c2 = ch[f] // 2
        elif m in [Detect, IDetect, IAuxDetect]:
            args.append([ch[x] for x in f])
        elif m is ReOrg:  # noqa: F405
            c2 = ch[f] * 4
        else:
            c2 = ch[f]
        layers.append((m, args))
        widths.append(c2)
    return layers, widths
