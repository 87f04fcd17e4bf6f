"""What Ultralytics 8.4.190's `DetectionModel.__init__` does around the layers the shared builder
makes.

For its own heads (Detect and its subclasses; any other last layer gets no measured strides):
the strides measured by a forward of zeros at 256x256 with the layers in eval mode (so the probe
leaves BatchNorm statistics alone, unlike YOLOv5's) and the head returning its raw maps, then
`bias_init` (box 2.0, class log(5 / nc / (640 / s)^2)); then every exact BatchNorm2d gets eps 1e-3
and momentum 0.03. Activations are left as built (no in-place switch). The YAML's `activation:`
is scoped to one build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from yolodiag.build.meta import shape_only
from yolodiag.dialects.ultralytics.conv import default_activation as activation_scope  # noqa: F401
from yolodiag.dialects.ultralytics.fuse import fuse  # noqa: F401  (overfit's fused view)
from yolodiag.dialects.ultralytics.heads import Detect
from yolodiag.dialects.ultralytics.scaling import DEFAULT_REG_MAX
from yolodiag.dialects.ultralytics.table import NON_LEGACY_HEAD

if TYPE_CHECKING:
    from yolodiag.build.builder import BuiltModel, DetectionNet, LayerRecord
    from yolodiag.spec import ModelSpec

PROBE_SIZE = 256
DESIGN_SIZE = 640  # the image size bias_init assumes
# gradflow's default image: at init the assigner takes objects at the level whose fresh boxes
# (reg_max - 1 = 15 strides a side, 480 px at stride 32) fit them, so every level gets positives,
# and its box branch a gradient, only in an image that holds a 480 px object.
GRADFLOW_SIZE = (640, 640)
ALWAYS_FROZEN = (".dfl",)  # the trainer's always_freeze_names: the DFL's fixed 0..15 bins
VALIDATION_CONF = 0.001  # the validator's conf (engine/validator.py, when args.conf is None)


def measure_head(net: DetectionNet, spec: ModelSpec, records: list[LayerRecord],
                 device: torch.device) -> tuple[tuple[float, ...] | None, None, bool]:
    """Strides by Ultralytics' probe, and the bias priors. Returns (strides, None, False): an
    anchor-free head has no anchors to divide or flip."""
    head = net.model[-1] if len(net.model) else None
    if not isinstance(head, Detect):
        return None, None, False
    net.eval()
    with torch.no_grad(), shape_only(device):
        out = net.run_layers(torch.zeros(1, spec.ch, PROBE_SIZE, PROBE_SIZE, device=device))
    strides = torch.tensor([PROBE_SIZE / m.shape[-2] for m in head.raw_maps(out)])
    net.train()
    with torch.no_grad():
        head.stride.copy_(strides.to(head.stride.device))
    head.bias_init(strides)  # on the meta device the buffer holds no values
    return tuple(strides.tolist()), None, False


def class_prior(stride: float, nc: int) -> float:
    """The class score a fresh head level predicts in each cell: bias_init's log(5 / nc /
    (640 / s)^2) through the sigmoid."""
    return 1 / (1 + nc * (DESIGN_SIZE / stride) ** 2 / 5)


def priors(head: Detect) -> tuple[tuple[float, None, float], ...]:
    """(stride, None, class probability) per level: what the class branch's biases give before
    training; the head has no objectness, so the class score is the confidence."""
    with torch.no_grad():
        return tuple((float(stride), None, float(branch[-1].bias.float().sigmoid().mean()))
                     for branch, stride in zip(head.cv3, head.stride.tolist()))


def level_object_sizes(built: BuiltModel) -> list[list[tuple[float, float]]]:
    """Per level, the box a fresh head predicts around each cell: equal logits over the DFL
    bins put each side's distance at (reg_max - 1) / 2 strides, so a square of reg_max - 1
    strides. The task-aligned assigner takes an object first at the level whose fresh boxes
    overlap it most: synthetic objects of these sizes give every level positives."""
    reg_max = built.model.head.reg_max if built.model is not None else DEFAULT_REG_MAX
    side = max(reg_max - 1, 1)
    return [[(side * float(s), side * float(s))] for s in built.stride]


def largest_box_side(stride: float, reg_max: int) -> float | None:
    """The longest box side (pixels) a level can regress: each side's distance from the cell
    centre is a DFL expectation over bins 0..reg_max-1 (in stride units), so at most
    2 (reg_max - 1) strides in all; None without DFL (reg_max 1 regresses distances directly)."""
    return None if reg_max <= 1 else 2 * (reg_max - 1) * stride


def head_facts(built: BuiltModel) -> dict[str, Any]:
    """What the report says of the head beyond its strides."""
    if built.model is None:  # built by the user's own code (--repo): read off its row
        return _recorded_head_facts(built)
    head = built.model.head
    if not isinstance(head, Detect):
        return {}
    return {"type": type(head).__name__, "nc": head.nc, "reg_max": head.reg_max,
            "outputs_per_cell": head.no, "legacy": bool(head.legacy),
            "end2end": head.end2end,
            "one2one_branch": head.has_one2one}


def _recorded_head_facts(built: BuiltModel) -> dict[str, Any]:
    """head_facts from the arguments their parse_model passed: Detect's `(nc, reg_max,
    end2end, widths)`, v10Detect's `(nc, widths)` (DFL of 16 bins, always a one-to-one copy);
    the layout as parse_model sets it from the earlier rows. No head is built for end-to-end
    inference, so `end2end` is False."""
    index = built.head_index
    record = built.layers[index] if index is not None else None
    if record is None or record.type not in ("Detect", "v10Detect") or not record.args:
        return {}
    v10 = record.type == "v10Detect"
    nc = record.args[0]
    reg_max = DEFAULT_REG_MAX if v10 else record.args[1]
    one2one = v10 or bool(record.args[2])
    legacy = not v10 and not (NON_LEGACY_HEAD & {r.module for r in built.layers[:index]})
    return {"type": record.type, "nc": nc, "reg_max": reg_max,
            "outputs_per_cell": nc + 4 * reg_max, "legacy": legacy, "end2end": False,
            "one2one_branch": one2one}


def initialize_weights(net: nn.Module) -> None:
    """Ultralytics' BatchNorm eps/momentum (exact type, as there); nothing else."""
    for m in net.modules():
        if type(m) is nn.BatchNorm2d:
            m.eps = 1e-3
            m.momentum = 0.03


def untrainable(built: BuiltModel) -> str | None:
    """Why gradflow and overfit cannot train this model: a head other than our Detect (or
    v10Detect), whose train output the loss does not know; None when they can."""
    if built.model is not None and isinstance(built.model.head, Detect):
        return None
    return "an Ultralytics Detect or v10Detect head (the loss reads its train output)"

