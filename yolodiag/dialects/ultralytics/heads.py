"""Ultralytics 8.4.190's anchor-free detection heads: DFL, Detect and v10Detect, eval-free and
side-effect free.

`forward` maps the per-level feature maps to the raw prediction dict 8.4.190's train-mode forward
returns, `{"boxes": (B, 4 * reg_max, A), "scores": (B, nc, A), "feats": maps}` (nested under
"one2many" and "one2one" when the head has a one-to-one branch), whatever the mode, and never
writes into its input list. `decode` turns one branch's dict into (B, 4 + nc, A): xywh in input
pixels and class probabilities; `assemble` gives the model's output in 8.4.190's shape for the
mode. A = the number of grid cells over all levels, one prediction per cell.

Attribute names (`cv2`, `cv3`, `dfl`, `one2one_cv2`, `one2one_cv3`, `nc`, `nl`, `no`, `reg_max`,
`stride`) are Ultralytics': they are its state-dict keys or read by code that handles its
checkpoints. `stride` is measured by the builder; 8.4.190 keeps it out of the state dict too.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from yolodiag.dialects.ultralytics.conv import Conv, DWConv
from yolodiag.dialects.ultralytics.decode import dist2bbox, make_anchors, top_detections

Predictions = dict  # {"boxes", "scores", "feats"}, or {"one2many": ..., "one2one": ...}


class DFL(nn.Module):
    """Distribution Focal Loss decoding: each box side is predicted as a distribution over `c1`
    distance bins (0 .. c1 - 1 grid cells); the distance is its expectation.

    (B, 4 * c1, A) logits -> (B, 4, A) distances. The bin values live in the fixed weight of a
    1x1 conv (`conv.weight`, a state-dict key), never trained.
    """

    def __init__(self, c1: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            # The bins on the CPU even when built on meta: meta's arange is a Python reference
            # whose first call imports torch._dynamo (half a second of every `check`).
            bins = torch.arange(c1, dtype=torch.float, device="cpu")
            self.conv.weight.copy_(bins.view(1, c1, 1, 1))
        self.c1 = c1

    def forward(self, x: Tensor) -> Tensor:
        batch, _, anchors = x.shape
        # Bins as channels: the 1x1 conv then sums bin value times probability per side.
        probabilities = x.view(batch, 4, self.c1, anchors).transpose(1, 2).softmax(1)
        return self.conv(probabilities).view(batch, 4, anchors)


class Detect(nn.Module):
    """Per level, a box branch `cv2[i]` (two 3x3 Conv, then a 1x1 Conv2d to 4 * reg_max) and a
    class branch `cv3[i]` (1x1 Conv2d to nc at the end).

    The class branch is two 3x3 Conv when `legacy` (8.4.190's class attribute, which its
    parse_model sets False once a C3k2, A2C2f or C2fCIB row came earlier; here a keyword the
    table's rule passes), else two (depth-wise 3x3, pointwise 1x1) pairs. Hidden widths:
    box c2 = max(16, ch[0] // 4, 4 * reg_max), class c3 = max(ch[0], min(nc, 100)).
    `end2end` adds a one-to-one copy of both branches (`one2one_cv2`, `one2one_cv3`), trained
    on detached features. reg_max == 1 predicts the distances directly (no DFL).
    """

    def __init__(self, nc: int = 80, reg_max: int = 16, end2end: bool = False, ch=(), *,
                 legacy: bool = True):
        super().__init__()
        self.nc = nc
        self.nl = len(ch)
        self.reg_max = reg_max
        self.no = nc + 4 * reg_max
        self.legacy = legacy
        self.max_det = 300
        self._one2one_inference = False
        self.register_buffer("stride", torch.zeros(self.nl), persistent=False)
        box_width = max(16, ch[0] // 4, 4 * reg_max)
        class_width = max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(self._box_branch(c, box_width) for c in ch)
        self.cv3 = nn.ModuleList(self._class_branch(c, class_width) for c in ch)
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()
        self.one2one_cv2 = copy.deepcopy(self.cv2) if end2end else None
        self.one2one_cv3 = copy.deepcopy(self.cv3) if end2end else None

    def _box_branch(self, c: int, width: int) -> nn.Sequential:
        return nn.Sequential(Conv(c, width, 3), Conv(width, width, 3),
                             nn.Conv2d(width, 4 * self.reg_max, 1))

    def _class_branch(self, c: int, width: int) -> nn.Sequential:
        if self.legacy:
            return nn.Sequential(Conv(c, width, 3), Conv(width, width, 3),
                                 nn.Conv2d(width, self.nc, 1))
        return nn.Sequential(nn.Sequential(DWConv(c, c, 3), Conv(c, width, 1)),
                             nn.Sequential(DWConv(width, width, 3), Conv(width, width, 1)),
                             nn.Conv2d(width, self.nc, 1))

    @property
    def has_one2one(self) -> bool:
        """Whether the head has a one-to-one branch (end2end YAMLs, v10Detect)."""
        return self.one2one_cv2 is not None

    @property
    def end2end(self) -> bool:
        """Eval mode answers with the one-to-one branch's top `max_det` rows instead of the
        one-to-many decoded output. False right after building, as in 8.4.190 (its validator
        and predictor set it from `nms=False`); only a head with that branch can be set."""
        return self.has_one2one and self._one2one_inference

    @end2end.setter
    def end2end(self, value: bool) -> None:
        if value and not self.has_one2one:
            raise ValueError("this head has no one-to-one branch (build it with end2end=True)")
        self._one2one_inference = bool(value)

    def forward(self, x: list[Tensor]) -> Predictions:
        if len(x) != self.nl:
            raise ValueError(f"a head built for {self.nl} levels got {len(x)} feature maps")
        one2many = self._predict(x, self.cv2, self.cv3)
        if not self.has_one2one:
            return one2many
        # In training the one-to-one branch learns from the features without moving them.
        features = [xi.detach() for xi in x] if self.training else x
        return {"one2many": one2many,
                "one2one": self._predict(features, self.one2one_cv2, self.one2one_cv3)}

    def _predict(self, x: list[Tensor], box_branches: nn.ModuleList,
                 class_branches: nn.ModuleList) -> dict[str, Tensor | list[Tensor]]:
        batch = x[0].shape[0]
        boxes = [branch(xi).view(batch, 4 * self.reg_max, -1)
                 for branch, xi in zip(box_branches, x)]
        scores = [branch(xi).view(batch, self.nc, -1) for branch, xi in zip(class_branches, x)]
        return {"boxes": torch.cat(boxes, -1), "scores": torch.cat(scores, -1), "feats": list(x)}

    @staticmethod
    def one2many_output(out: Predictions) -> dict:
        """The one-to-many branch's dict of a raw output (the whole output without a one-to-one
        branch)."""
        return out.get("one2many", out)

    def raw_maps(self, out: Predictions) -> list[Tensor]:
        """The per-level maps the stride probe measures: the head's inputs, (B, C, H, W) each,
        as 8.4.190 measures `feats`."""
        return self.one2many_output(out)["feats"]

    def decode(self, branch: dict, xywh: bool = True) -> Tensor:
        """One branch's dict (or a whole train-mode output: its one-to-many branch) -> (B, 4 +
        nc, A): boxes in input pixels (centre and size, or corners when not `xywh`) from the
        expected DFL distances around each cell centre, then the class probabilities."""
        branch = self.one2many_output(branch)
        points, strides = make_anchors(branch["feats"], self.stride, 0.5)
        distances = self.dfl(branch["boxes"])
        boxes = dist2bbox(distances, points.T.unsqueeze(0), xywh=xywh, dim=1) * strides.T
        return torch.cat((boxes, branch["scores"].sigmoid()), 1)

    def assemble(self, out: Predictions, training: bool):
        """8.4.190's model output: the raw dict in train mode; in eval `(decoded, raw)`, decoded
        from the one-to-many branch, or with `end2end` set the one-to-one branch's
        (B, min(max_det, A), 6) rows (x1, y1, x2, y2, score, class) without NMS."""
        if training:
            return out
        if not self.end2end:
            return self.decode(self.one2many_output(out)), out
        decoded = self.decode(out["one2one"], xywh=False).transpose(1, 2)
        return top_detections(decoded[..., :4], decoded[..., 4:], self.max_det), out

    @torch.no_grad()
    def bias_init(self, strides: Tensor | None = None) -> None:
        """8.4.190's priors for every branch: box logits 2.0; class logits at about 5 objects
        per 640x640 image spread over the level's cells and the classes. `strides` default to
        the measured `stride` (pass them on the meta device, where that holds no values)."""
        strides = torch.as_tensor(self.stride if strides is None else strides,
                                  dtype=torch.float32)
        branches = [(self.cv2, self.cv3)]
        if self.has_one2one:
            branches.append((self.one2one_cv2, self.one2one_cv3))
        for box_branches, class_branches in branches:
            for box, cls, stride in zip(box_branches, class_branches, strides):
                box[-1].bias.fill_(2.0)
                cls[-1].bias[:self.nc] = class_prior_logit(self.nc, stride)


class v10Detect(Detect):  # Ultralytics' class name: the YAML's module name
    """YOLOv10's head: Detect with reg_max 16, always a one-to-one branch, and a light class
    branch of grouped 3x3 Conv (groups = width, as a Conv, not a DWConv) and 1x1 Conv pairs.

    8.4.190 ignores its legacy flag here: its parse_model passes v10Detect only [nc, ch].
    """

    def __init__(self, nc: int = 80, ch=()):
        super().__init__(nc, 16, True, ch, legacy=False)

    def _class_branch(self, c: int, width: int) -> nn.Sequential:
        return nn.Sequential(nn.Sequential(Conv(c, c, 3, g=c), Conv(c, width, 1)),
                             nn.Sequential(Conv(width, width, 3, g=width), Conv(width, width, 1)),
                             nn.Conv2d(width, self.nc, 1))


def class_prior_logit(nc: int, stride) -> float:
    """8.4.190's class bias: log(5 / nc / (640 / stride)^2). `stride` may be a float32 tensor:
    the arithmetic then rounds as Ultralytics' does."""
    return math.log(5 / nc / (640 / stride) ** 2)
