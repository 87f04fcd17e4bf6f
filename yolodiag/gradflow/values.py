"""Gradient flow's results: what one measured forward and backward found, as plain values.

Per YAML layer (LayerGradient), per residual add and per block that declares a shortcut but
adds nothing (ResidualAdd, MissingAdd), the shortcut ablation (Ablation), per stride stage
(StageGradient) and the whole measurement (GradFlow), each with `as_dict` for the report.
Frozen dataclasses of floats, ints and strings: nothing here touches torch, hooks a model or
judges the numbers (checks/gradients.py does), so the checks and renderers can read them freely.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LayerGradient:
    """One YAML layer after one backward of the total loss (norms are L2 over all its
    parameters; None where the layer has no parameters or no gradient reached it)."""

    index: int
    module: str
    stride: int | None  # output stride at the measured size; None for the head
    params: int
    grad_norm: float
    weight_norm: float
    zero_fraction: float | None  # share of gradient entries exactly zero (None: no parameters)
    silent: tuple[str, ...]  # parameters with no gradient or an all-zero one
    frozen: tuple[str, ...]  # parameters the caller had frozen (measured anyway)
    nonfinite: tuple[str, ...]  # parameters with a NaN or Inf gradient
    components: dict[str, float]  # gradient norm of each loss term alone
    output_grad: float | None  # norm of the gradient that reached the layer's output
    output_finite: bool
    dead_units: int = 0  # ReLU-family units zero for every image and position
    relu_units: int = 0
    # The activation with the largest share of dead units: (module path, dead, units).
    worst_activation: tuple[str, int, int] | None = None

    @property
    def ratio(self) -> float | None:
        """|grad| / |w|: how far one SGD step moves the layer relative to its size, per unit lr."""
        if not self.params or not self.weight_norm or not math.isfinite(self.grad_norm):
            return None
        return self.grad_norm / self.weight_norm

    @property
    def dead_fraction(self) -> float | None:
        return self.dead_units / self.relu_units if self.relu_units else None

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "module": self.module, "stride": self.stride,
                "params": self.params, "grad_norm": self.grad_norm,
                "weight_norm": self.weight_norm, "ratio": self.ratio,
                "zero_fraction": self.zero_fraction, "silent": list(self.silent),
                "frozen": list(self.frozen), "nonfinite": list(self.nonfinite),
                "components": self.components, "output_grad": self.output_grad,
                "output_finite": self.output_finite, "dead_units": self.dead_units,
                "relu_units": self.relu_units, "dead_fraction": self.dead_fraction,
                "worst_activation": (dict(zip(("module", "dead_units", "units"),
                                              self.worst_activation))
                                     if self.worst_activation else None)}


@dataclass(frozen=True)
class ResidualAdd:
    """One residual add: the gradient at its output and what reaches the block's input through
    each operand (None: that operand does not derive from the input, so it carries nothing)."""

    layer: int
    block: str  # module path, e.g. "model.13.m.0"
    block_type: str
    identity: bool  # the shortcut is the block's input itself
    measured: bool  # gradient reached the add and the block's input can take some
    add_grad: float | None
    shortcut_grad: float | None
    branch_grad: float | None

    @property
    def shortcut_share(self) -> float | None:
        """Shortcut's part of the two norms: 0.5 when both carry as much."""
        parts = [self.shortcut_grad or 0.0, self.branch_grad or 0.0]
        return parts[0] / sum(parts) if self.measured and sum(parts) else None

    def as_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "block": self.block, "block_type": self.block_type,
                "identity": self.identity, "measured": self.measured, "add_grad": self.add_grad,
                "shortcut_grad": self.shortcut_grad, "branch_grad": self.branch_grad,
                "shortcut_share": self.shortcut_share}


@dataclass(frozen=True)
class MissingAdd:
    """A block that declares a shortcut (`declared_by`) but whose forward adds nothing."""

    layer: int
    block: str
    block_type: str
    declared_by: str

    def as_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "block": self.block, "block_type": self.block_type,
                "declared_by": self.declared_by}


@dataclass(frozen=True)
class Ablation:
    """The gradient norm over the earliest layers with the shortcuts and with all removed."""

    layers: tuple[int, ...]
    removed: int  # shortcuts removed
    with_shortcuts: float
    without_shortcuts: float
    head_with: float  # the head's gradient norm, for scale: the loss changes too
    head_without: float
    loss_with: float
    loss_without: float

    @property
    def ratio(self) -> float | None:
        """Early-layer gradient with the shortcuts over without them."""
        return _ratio(self.with_shortcuts, self.without_shortcuts)

    @property
    def ratio_to_head(self) -> float | None:
        """The same, each measured in units of the head's gradient in its own run."""
        with_, without = (_ratio(self.with_shortcuts, self.head_with),
                          _ratio(self.without_shortcuts, self.head_without))
        return None if with_ is None or without is None else _ratio(with_, without)

    def as_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "removed": self.removed,
                "with_shortcuts": self.with_shortcuts,
                "without_shortcuts": self.without_shortcuts, "ratio": self.ratio,
                "head_with": self.head_with, "head_without": self.head_without,
                "ratio_to_head": self.ratio_to_head,
                "loss_with": self.loss_with, "loss_without": self.loss_without}


def _ratio(a: float, b: float) -> float | None:
    if not b:
        return math.inf if a else None
    return a / b


@dataclass(frozen=True)
class StageGradient:
    """The layers of one output stride (None: the head) taken together."""

    stride: int | None
    layers: tuple[int, ...]
    params: int
    grad_norm: float
    to_head: float | None  # grad_norm over the head's
    components: dict[str, float]  # gradient norm of each loss term alone

    def as_dict(self) -> dict[str, Any]:
        return {"stride": self.stride, "layers": list(self.layers), "params": self.params,
                "grad_norm": self.grad_norm, "to_head": self.to_head,
                "components": self.components}


@dataclass(frozen=True)
class GradFlow:
    """What one `measure` found."""

    img: tuple[int, int]
    batch: int
    device: str
    targets: int
    # "total", then each of the family's loss terms (`dialect.loss.TERMS`: box, obj, cls for
    # YOLOv5; box, cls, dfl for Ultralytics), each times the batch, as trained
    loss: dict[str, float]
    layers: tuple[LayerGradient, ...]
    adds: tuple[ResidualAdd, ...] = ()
    missing_adds: tuple[MissingAdd, ...] = ()
    ablation: Ablation | None = None
    ablation_error: str | None = None
    first_nonfinite: int | None = None  # first layer, in forward order, with a non-finite output
    head: int | None = None

    @property
    def finite(self) -> bool:
        return (all(math.isfinite(v) for v in self.loss.values())
                and not any(layer.nonfinite for layer in self.layers))

    @property
    def terms(self) -> tuple[str, ...]:
        """The family's loss terms, in its order."""
        return tuple(name for name in self.loss if name != "total")

    def layer(self, index: int) -> LayerGradient:
        return next(layer for layer in self.layers if layer.index == index)

    @property
    def median_ratio(self) -> float | None:
        ratios = [r for r in (layer.ratio for layer in self.layers) if r]
        return statistics.median(ratios) if ratios else None

    def stages(self) -> list[StageGradient]:
        """Layers grouped by output stride, finest first, the head last."""
        groups: dict[int | None, list[LayerGradient]] = {}
        for layer in self.layers:
            groups.setdefault(layer.stride, []).append(layer)
        head = self.layer(self.head).grad_norm if self.head is not None else None
        stages = []
        for stride in sorted(groups, key=lambda s: math.inf if s is None else s):
            members = groups[stride]
            norm = _total(m.grad_norm for m in members)
            stages.append(StageGradient(
                stride, tuple(m.index for m in members), sum(m.params for m in members), norm,
                norm / head if head else None,
                {c: _total(m.components[c] for m in members) for c in self.terms}))
        return stages

    def as_dict(self) -> dict[str, Any]:
        return {"img": list(self.img), "batch": self.batch, "device": self.device,
                "targets": self.targets, "loss": self.loss, "finite": self.finite,
                "median_ratio": self.median_ratio, "head": self.head,
                "first_nonfinite": self.first_nonfinite,
                "layers": [layer.as_dict() for layer in self.layers],
                "stages": [stage.as_dict() for stage in self.stages()],
                "residual": {"adds": [a.as_dict() for a in self.adds],
                             "missing": [m.as_dict() for m in self.missing_adds],
                             "ablation": self.ablation.as_dict() if self.ablation else None,
                             "ablation_error": self.ablation_error}}


def _total(norms) -> float:
    """The norm of several layers' gradients together."""
    return math.sqrt(sum(n * n for n in norms))
