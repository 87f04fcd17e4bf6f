"""The probe of gradient flow: hooks and a torch-function mode over one forward of a model.

`_Probe` records per top-level layer its output stride, finiteness, dead ReLU-family units and
the gradient that reaches its output; it finds every residual add (a block adding two maps of
the same shape that both come from its input: BasicBlock, Bottleneck with shortcut, a user's
block of that shape), which operand is the shortcut, and splits the gradient reaching the
block's input into what each operand carries; with `drop` it replaces those adds by their branch
alone, for the ablation. It reads the layers as `net.model` and sees only tensors and attributes
(a block declares a shortcut by `add = True` or one of SHORTCUT_ATTRIBUTES): no loss, no head,
no module class names. Its module hooks live for its `with` block only and are removed in
`finally`, as torchinfo does; restoring what the forward and backward change is measure's job.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from yolodiag.gradflow.values import MissingAdd, ResidualAdd

_ADDS = frozenset({"add", "add_", "__add__", "__iadd__", "__radd__"})
# Activations whose output is exactly zero on a whole region of inputs: a unit can die.
_RELU_FAMILY = frozenset({"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "hardswish",
                          "hardswish_", "threshold", "threshold_"})
# A block declares a shortcut by one of these attributes (YOLOv5's `add` flag, the seed's and
# torchvision's names); if its forward then adds nothing, the shortcut is missing.
SHORTCUT_ATTRIBUTES = ("shortcut", "downsample", "skip")
_GRAPH_LIMIT = 20_000  # autograd nodes searched between an add and its block's input


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


def _square(t: Tensor) -> Tensor:
    """Sum of squares, as a CPU scalar tensor. Not `vector_norm`: in float32 it accumulates
    naively, 2e-4 off on a layer of 4.7M weights (yolov3-tiny's layer 13); `sum` is
    pairwise, 1e-7 off."""
    return t.detach().float().pow(2).sum().cpu()


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
