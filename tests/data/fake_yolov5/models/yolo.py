"""A stand-in for a YOLOv5 checkout's models/yolo.py, written for yolodiag's tests (not taken
from YOLOv5): `DetectionModel(cfg, ch, nc)` builds the YAML with yolodiag's own builder and
presents it as YOLOv5's model does: `.model` the layers, each carrying `i`, `f`, `type` and `np`,
`.stride`, and a forward that routes each layer's `from`.

The block classes are imported into this module's namespace because `--repo` records
constructor arguments by wrapping the classes it finds here, as YOLOv5's yolo.py has them.
"""

import torch
from torch import nn

from yolodiag.build.builder import build
from yolodiag.dialects.yolov5.blocks import *  # noqa: F403
from yolodiag.dialects.yolov5.heads import Detect, Segment  # noqa: F401
from yolodiag.dialects.yolov5.table import ModuleEntry
from yolodiag.spec import load_spec


class Down(nn.Module):
    """A block of this checkout's own, registered here as channel-aware."""

    def __init__(self, c1, c2, k=3):
        super().__init__()
        self.conv = Conv(c1, c2, k, 2)  # noqa: F405

    def forward(self, x):
        return self.conv(x)


OWN = {"Down": ModuleEntry("Down", "models.yolo:Down", "channels", cls=Down)}


class DetectionModel(nn.Module):
    def __init__(self, cfg, ch=3, nc=None):
        super().__init__()
        built = build(load_spec(cfg, extra_modules=frozenset(OWN)), nc=nc, modules=OWN)
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
        return head.assemble(x, self.training) if isinstance(head, Detect) else x


Model = DetectionModel
