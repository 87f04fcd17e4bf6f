"""Gradient flow: one real forward and backward of YOLOv5's loss, measured layer by layer.

`measure` runs a built model in train mode on one batch, backpropagates the total loss, then each
of its terms (box, objectness, class) on its own, and records per YAML layer: the gradient norm
of its parameters, that norm over the weight norm, the share of exactly-zero gradient entries,
the ReLU-family units that are zero over the whole batch, whether its output was finite and how
much gradient reached it. For every residual add (a block adding two maps of the same shape that
both come from its input: BasicBlock, Bottleneck with shortcut, a user's block of that shape) it
splits the gradient reaching the block's input into what the shortcut and what the branch carry,
and it runs the forward and backward again with every shortcut removed, to measure what they are
worth at the earliest layers.

The model is left exactly as it was found: BatchNorm buffers, `training` flags, `requires_grad`
and `.grad` are restored, even when something raises; hooks are removed in `finally`, as
torchinfo does. Nothing here judges the numbers: checks/gradients.py does.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from yolodiag.loss import HYP, loss_terms, train_hyp
from yolodiag.probes import preserved
from yolodiag.reference.builder import BuiltModel
from yolodiag.reference.heads import Segment

COMPONENTS = ("box", "obj", "cls")
_ADDS = frozenset({"add", "add_", "__add__", "__iadd__", "__radd__"})
# Activations whose output is exactly zero on a whole region of inputs: a unit can die.
_RELU_FAMILY = frozenset({"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "hardswish",
                          "hardswish_", "threshold", "threshold_"})
# A block declares a shortcut by one of these attributes (YOLOv5's `add` flag, the seed's and
# torchvision's names); if its forward then adds nothing, the shortcut is missing.
SHORTCUT_ATTRIBUTES = ("shortcut", "downsample", "skip")
_GRAPH_LIMIT = 20_000  # autograd nodes searched between an add and its block's input


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
    loss: dict[str, float]  # total, box, obj, cls (each term times the batch, as trained)
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
                {c: _total(m.components[c] for m in members) for c in COMPONENTS}))
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


def measure(built: BuiltModel, images: Tensor, targets: Tensor,
            hyp: Mapping[str, float] | None = None, *, ablate: bool = True) -> GradFlow:
    """One train-mode forward of `images` (batch, 3, h, w), YOLOv5's loss against `targets`
    (n, 6), and one backward of each of its terms in turn (their gradients add up to the
    total's); then, with `ablate`, a forward and backward with every residual shortcut
    removed. `hyp` defaults to hyp.scratch-low's gains scaled as train.py scales them (class
    count, image size, levels), so the terms weigh what they weigh in training. The model is
    restored afterwards."""
    net = built.model
    if net.head is None or isinstance(net.head, Segment):
        raise ValueError("gradflow measures models whose last layer is Detect "
                         f"(this one ends in {type(net.model[-1]).__name__})")
    batch, img = images.shape[0], tuple(images.shape[-2:])
    hyp = hyp or train_hyp(HYP, net.head.nc, max(img), net.head.nl)
    layer_params = [list(layer.named_parameters()) for layer in net.model]
    with preserved(net):
        frozen = {p for p in net.parameters() if not p.requires_grad}
        for p in net.parameters():
            p.requires_grad_(True)
            p.grad = None
        net.train()
        with _Probe(net, img) as probe:
            raw = net(images)
        box, obj, cls = loss_terms(net.head, raw, targets, hyp)
        total = (box + obj + cls) * batch  # compute_loss's expression, to the last bit
        terms = [term * batch for term in (box, obj, cls)]
        components = _backward_terms(terms, layer_params)
        probe.recording = False
        layers = tuple(_layer_gradient(i, built, params, frozen, probe,
                                       {c: comp[i] for c, comp in zip(COMPONENTS, components)})
                       for i, params in enumerate(layer_params))
        adds = tuple(probe.split(record) for record in probe.records)
        missing = tuple(probe.missing_adds())
        loss = {"total": float(total.detach()),
                **{c: float(t.detach()) for c, t in zip(COMPONENTS, terms)}}
        drop = {record.ordinal: record.shortcut for record in probe.records}
        del raw, terms, total, probe  # free the graph before the second forward
        ablation, ablation_error = None, None
        if ablate and drop:
            try:
                ablation = _ablation(built, images, targets, hyp, drop, layer_params, adds,
                                     loss["total"], layers)
            except RuntimeError as e:  # a block that cannot run without its shortcut
                ablation_error = f"{type(e).__name__}: {e}"
    first_bad = next((layer.index for layer in layers if not layer.output_finite), None)
    return GradFlow(img, batch, str(images.device), int(targets.shape[0]), loss, layers, adds,
                    missing, ablation, ablation_error, first_bad, built.head_index)


def _backward_terms(terms: list[Tensor], layer_params) -> list[list[float]]:
    """Backpropagate the loss terms one after the other. `.grad` (and every tensor hook) sums
    them, which is the total loss's gradient, for the price of three backwards instead of
    four; each term's own gradient is what its backward added. Returns, per term, the norm of
    its gradient per layer (0 where the term has none, e.g. the class term of nc 1)."""
    params = [p for group in layer_params for _, p in group]
    before: list[Tensor | None] = [None] * len(params)
    norms = []
    for term in terms:
        if not term.requires_grad:
            norms.append([0.0] * len(layer_params))
            continue
        term.backward(retain_graph=True)
        squares = iter([float(_square(p.grad - b if b is not None else p.grad))
                        if p.grad is not None else 0.0 for p, b in zip(params, before)])
        norms.append([math.sqrt(sum(next(squares) for _ in group)) for group in layer_params])
        before = [None if p.grad is None else p.grad.detach().clone() for p in params]
    return norms


def _layer_gradient(index: int, built: BuiltModel, params, frozen, probe: _Probe,
                    components: dict[str, float]) -> LayerGradient:
    grads = [(name, p, p.grad) for name, p in params]
    present = [g for _, _, g in grads if g is not None]
    grad_sq = sum((_square(g) for g in present), torch.zeros(()))
    weight_sq = sum((_square(p) for _, p, _ in grads), torch.zeros(()))
    zeros = sum(int((g == 0).sum()) for g in present)
    entries = sum(p.numel() for _, p, _ in grads)
    dead, units = probe.dead.get(index, (0, 0))
    return LayerGradient(
        index=index, module=built.layers[index].module, stride=probe.strides.get(index),
        params=entries, grad_norm=math.sqrt(float(grad_sq)),
        weight_norm=math.sqrt(float(weight_sq)),
        zero_fraction=(zeros + sum(p.numel() for _, p, g in grads if g is None)) / entries
        if entries else None,
        silent=tuple(n for n, _, g in grads if g is None or not bool(g.any())),
        frozen=tuple(n for n, p, _ in grads if p in frozen),
        nonfinite=tuple(n for n, _, g in grads
                        if g is not None and not bool(torch.isfinite(g).all())),
        components=components,
        output_grad=probe.output_grad(index),
        output_finite=probe.finite(index), dead_units=dead, relu_units=units,
        worst_activation=probe.worst.get(index))


def _square(t: Tensor) -> Tensor:
    """Sum of squares, as a CPU scalar tensor. Not `vector_norm`: in float32 it accumulates
    naively, 2e-4 off on a layer of 4.7M weights (yolov3-tiny's layer 13); `sum` is
    pairwise, 1e-7 off."""
    return t.detach().float().pow(2).sum().cpu()


def _ablation(built: BuiltModel, images: Tensor, targets: Tensor, hyp, drop: dict[int, int],
              layer_params, adds: tuple[ResidualAdd, ...], loss_with: float,
              layers: tuple[LayerGradient, ...]) -> Ablation:
    """The same forward and backward with each residual add replaced by its branch alone."""
    first_block = min(a.layer for a in adds)
    early = tuple(i for i, params in enumerate(layer_params) if params and i < first_block)
    early = early or (first_block,)
    net = built.model
    for p in net.parameters():
        p.grad = None
    with _Probe(net, tuple(images.shape[-2:]), drop=drop):
        raw = net(images)
    box, obj, cls = loss_terms(net.head, raw, targets, hyp)
    total = (box + obj + cls) * images.shape[0]
    total.backward()
    head = len(layer_params) - 1
    return Ablation(early, len(drop), _total(layers[i].grad_norm for i in early),
                    _grad_norm(layer_params, early), layers[head].grad_norm,
                    _grad_norm(layer_params, [head]), loss_with, float(total.detach()))


def _grad_norm(layer_params, indices) -> float:
    """The norm of the current `.grad` of these layers' parameters together."""
    return math.sqrt(sum(float(_square(p.grad)) for i in indices for _, p in layer_params[i]
                         if p.grad is not None))


@dataclass
class _AddRecord:
    """A candidate residual add seen during the forward (kept until the split is measured)."""

    ordinal: int
    layer: int
    block: str
    module: nn.Module
    block_input: Tensor
    operands: tuple[Any, Any]  # tensors; an in-place add's first one as its gradient edge
    requires_grad: tuple[bool, bool]
    shortcut: int  # index of the shortcut among the operands
    identity: bool
    grad: Tensor | None = None

    def catch(self, grad: Tensor) -> None:
        self.grad = grad.detach() if self.grad is None else self.grad + grad.detach()


class _Probe(TorchFunctionMode):
    """Hooks and a torch-function mode over one forward: per top-level layer its output stride,
    finiteness, dead ReLU-family units and (in the backward) the gradient reaching its output;
    every add of two same-shaped 4-D maps inside a block, with which operand is the shortcut.
    With `drop` (ordinal of such an add -> index of its shortcut operand) those adds return
    their branch alone. Module hooks live for the `with` block only."""

    def __init__(self, net: nn.Module, img: tuple[int, int],
                 drop: dict[int, int] | None = None):
        super().__init__()
        self.net, self.img, self.drop = net, img, drop
        self.layer: int | None = None
        self.stack: list[tuple[str, nn.Module, Tensor | None]] = []
        self.records: list[_AddRecord] = []
        self.added: set[int] = set()  # ids of modules whose forward added two maps
        self.called: set[int] = set()  # ids of modules that ran
        self.dead: dict[int, tuple[int, int]] = {}  # layer -> (dead units, units)
        self.worst: dict[int, tuple[str, int, int]] = {}  # layer -> its deadest activation
        self.strides: dict[int, int | None] = {}
        self.sums: dict[int, list[Tensor]] = {}  # layer -> sums of its outputs
        self.output_grads: dict[tuple[int, int], Tensor] = {}  # (layer, output) -> gradient
        self.ordinal = 0
        self.recording = True
        self._handles: list[Any] = []

    def __enter__(self):
        top = {id(layer): i for i, layer in enumerate(self.net.model)}
        try:
            for path, module in self.net.named_modules():
                if module is not self.net:
                    self._handles.append(module.register_forward_pre_hook(self._enter(path, top)))
                    self._handles.append(module.register_forward_hook(self._leave(top)))
            return super().__enter__()
        except BaseException:
            self._remove_hooks()
            raise

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _enter(self, path: str, top: dict[int, int]):
        def hook(module, args):
            if id(module) in top:
                self.layer = top[id(module)]
            x = args[0] if len(args) == 1 and isinstance(args[0], Tensor) else None
            self.stack.append((path, module, x))
            self.called.add(id(module))
        return hook

    def _leave(self, top: dict[int, int]):
        def hook(module, args, output):
            self.stack.pop()
            index = top.get(id(module))
            if index is None:
                return
            tensors = [t for t in _flat(output) if isinstance(t, Tensor)]
            first = tensors[0] if len(tensors) == 1 and tensors[0].dim() == 4 else None
            self.strides[index] = (self.img[0] // first.shape[-2]
                                   if first is not None and first.shape[-2] else None)
            # A sum is NaN or Inf when any element is: one reduction, read after the forward.
            self.sums[index] = [t.detach().sum() for t in tensors if t.is_floating_point()]
            for k, t in enumerate(tensors):
                if t.requires_grad:
                    t.register_hook(self._output_grad((index, k)))
        return hook

    def finite(self, index: int) -> bool:
        return all(bool(torch.isfinite(s)) for s in self.sums.get(index, ()))

    def _output_grad(self, key: tuple[int, int]):
        def hook(grad):  # one call per output per backward: the sum is the total's gradient
            if self.recording:
                previous = self.output_grads.get(key)
                self.output_grads[key] = grad.detach() if previous is None else (
                    previous + grad.detach())
        return hook

    def output_grad(self, index: int) -> float | None:
        """Norm of the gradient that reached the layer's outputs (None: none did)."""
        grads = [g for (i, _), g in self.output_grads.items() if i == index]
        return math.sqrt(sum(float(_square(g)) for g in grads)) if grads else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _ADDS and self.stack:
            return self._add(func, name, args, kwargs)
        out = func(*args, **kwargs)
        if name in _RELU_FAMILY and self.layer is not None and isinstance(out, Tensor):
            self._count_dead(name, args, kwargs, out)
        return out

    def _add(self, func, name: str, args, kwargs):
        a = args[0]
        b = args[1] if len(args) > 1 else kwargs.get("other")
        path, module, x = self.stack[-1]
        if (x is None or not isinstance(a, Tensor) or not isinstance(b, Tensor)
                or a.dim() != 4 or a.shape != b.shape or not a.is_floating_point()
                or kwargs.get("alpha", 1) != 1):
            return func(*args, **kwargs)
        self.added.add(id(module))
        ordinal = self.ordinal
        self.ordinal += 1
        if self.drop is not None:
            if ordinal in self.drop:
                return b if self.drop[ordinal] == 0 else a
            return func(*args, **kwargs)
        same = [_same_storage(t, x) for t in (a, b)]
        distance = [0 if s else _distance(t, x) for s, t in zip(same, (a, b))]
        requires = (a.requires_grad, b.requires_grad)
        kept = (_before_inplace(a) if name in ("add_", "__iadd__") else a, b)
        out = func(*args, **kwargs)
        if all(d is None for d in distance):
            return out  # neither operand comes from the block's input: not a residual add
        shortcut = (0 if same[0] else 1) if any(same) else _shorter(distance)
        record = _AddRecord(ordinal, self.layer, path, module, x, kept, requires, shortcut,
                            any(same))
        if isinstance(out, Tensor) and out.requires_grad:
            out.register_hook(lambda g: record.catch(g) if self.recording else None)
        self.records.append(record)
        return out

    def _count_dead(self, name: str, args, kwargs, out: Tensor) -> None:
        if name.startswith("hardtanh"):  # only relu6 = hardtanh(0, 6) is ReLU-like
            low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
            if low != 0:
                return
        if out.dim() < 2:
            return
        unit = 1 if out.dim() == 4 else out.dim() - 1  # channels, or features
        dims = tuple(d for d in range(out.dim()) if d != unit)
        # ReLU and ReLU6 are never negative: their largest value says whether a unit lives.
        peak = out.detach() if name.startswith(("relu", "hardtanh")) else out.detach().abs()
        alive = peak.amax(dim=dims) != 0  # NaN is not 0: a NaN unit is YD602's, not dead
        dead, units = int((~alive).sum()), alive.numel()
        total_dead, total_units = self.dead.get(self.layer, (0, 0))
        self.dead[self.layer] = (total_dead + dead, total_units + units)
        worst = self.worst.get(self.layer)
        if units and (worst is None or dead / units > worst[1] / worst[2]):
            self.worst[self.layer] = (self.stack[-1][0] if self.stack else "", dead, units)

    def split(self, record: _AddRecord) -> ResidualAdd:
        """The gradient reaching the block's input through the shortcut and through the branch
        (autograd from each operand back to the input, with the gradient the add received)."""
        x, g = record.block_input, record.grad
        measured = g is not None and x.requires_grad
        reach: list[float | None] = [None, None]
        if measured:
            for k, operand in enumerate(record.operands):
                if operand is x:
                    reach[k] = _norm(g)
                elif record.requires_grad[k]:
                    (through,) = torch.autograd.grad(operand, x, g, retain_graph=True,
                                                     allow_unused=True)
                    reach[k] = None if through is None else _norm(through)
        return ResidualAdd(record.layer, record.block, type(record.module).__name__,
                           record.identity, measured, None if g is None else _norm(g),
                           reach[record.shortcut], reach[1 - record.shortcut])

    def missing_adds(self) -> Iterator[MissingAdd]:
        """Blocks that declare a shortcut but whose forward added no maps."""
        for i, layer in enumerate(self.net.model):
            for path, module in layer.named_modules(prefix=f"model.{i}"):
                declared = _declared_shortcut(module)
                if declared and id(module) in self.called and id(module) not in self.added:
                    yield MissingAdd(i, path, type(module).__name__, declared)


def _total(norms) -> float:
    """The norm of several layers' gradients together."""
    return math.sqrt(sum(n * n for n in norms))


def _norm(t: Tensor) -> float:
    return math.sqrt(float(_square(t)))


def _before_inplace(a: Tensor) -> Any:
    """What stands for `a` as it was before an in-place add rewrites its history: its gradient
    edge (no copy) where autograd takes edges as outputs, else a copy of it."""
    if a.requires_grad and _edges_as_outputs():
        from torch.autograd.graph import get_gradient_edge

        return get_gradient_edge(a)
    return a.clone()


@functools.cache
def _edges_as_outputs() -> bool:
    """Whether this torch's autograd.grad accepts a GradientEdge as an output (recent
    releases do; torch 2.13 does)."""
    try:
        from torch.autograd.graph import get_gradient_edge

        w = torch.ones(1, requires_grad=True)
        torch.autograd.grad(get_gradient_edge(w * 2), w, torch.ones(1))
        return True
    except (ImportError, TypeError, RuntimeError, AttributeError):
        return False


def _declared_shortcut(module: nn.Module) -> str | None:
    if getattr(module, "add", None) is True:
        return "`add = True`"
    for name in SHORTCUT_ATTRIBUTES:
        if name in module._modules or (name in vars(module) and vars(module)[name] is None):
            return f"attribute `{name}`"
    return None


def _same_storage(t: Tensor, x: Tensor) -> bool:
    """t is x, a view of it or a detached copy of it (same memory and shape)."""
    return t is x or (t.shape == x.shape and t.device == x.device
                      and t.data_ptr() == x.data_ptr() and t.data_ptr() != 0)


def _shorter(distance: list[int | None]) -> int:
    """Index of the operand with the shorter path from the block input (the second on a tie,
    YOLOv5's `x + branch` and the seed's `branch += shortcut` both put it there or first)."""
    a, b = (math.inf if d is None else d for d in distance)
    return 0 if a < b else 1


def _distance(t: Tensor, x: Tensor) -> int | None:
    """Autograd nodes between t and the block input x (None: t does not derive from x). Only
    nodes made after x are searched: an older node cannot lie on a path back to x."""
    target = x.grad_fn
    start = t.grad_fn
    if target is None or start is None:
        return None
    floor = target._sequence_nr()
    frontier, seen, depth = [start], {start}, 1
    while frontier and len(seen) < _GRAPH_LIMIT:
        following = []
        for node in frontier:
            if node is target:
                return depth
            for parent, _ in node.next_functions:
                if (parent is not None and parent not in seen
                        and parent._sequence_nr() >= floor
                        and type(parent).__name__ != "AccumulateGrad"):
                    seen.add(parent)
                    following.append(parent)
        frontier, depth = following, depth + 1
    return None


def _flat(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in _flat(v)]
    return [value]
