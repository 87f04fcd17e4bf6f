"""Shape and cost tracing: one eval-mode forward per image size, on the meta device.

For each requested (height, width) the built network runs once on a meta tensor (shapes only,
no activation memory) with hooks on every layer, recording what each layer received and gave
(shapes), its stride (input width / output width, as YOLOv5's summary measures it), its
multiply-adds counted as YOLOv5's profiler counts them, its theoretical receptive field, and
every residual-style add of two feature maps whose shapes differ. Hooks are removed and the
train/eval mode restored in a `finally`, whatever happens; a failing forward names the layer,
the operation and the image size. The head's entry is the model's output in YOLOv5's eval form,
e.g. (decoded, raw maps). Nothing here judges: the checks read these records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from yolodiag.build.builder import BuiltModel, LayerFailed
from yolodiag.build.meta import shape_only
from yolodiag.shapes import Shape, is_map

MODERN_PROFILER = "ultralytics-thop 2.2"  # see Dialect.profiler


def gflops(macs: int) -> float:
    """YOLOv5's convention: 2 x multiply-adds, in units of 1e9."""
    return 2 * macs / 1e9


@dataclass(frozen=True)
class LayerTrace:
    index: int
    out_shape: Shape
    stride: int | None  # input width // output width; None for multi-output layers
    macs: int  # multiply-adds, counted as YOLOv5's profiler (thop) counts them
    in_shapes: tuple[Shape, ...] = ()  # what the layer received, one shape per input
    receptive_field: float | None = None  # theoretical, in input pixels (inf: global)

    @property
    def gflops(self) -> float:
        return gflops(self.macs)

    @property
    def channels(self) -> int | None:
        """Output channels of a single feature-map output."""
        return self.out_shape[1] if is_map(self.out_shape) else None


@dataclass(frozen=True)
class MismatchedAdd:
    """An elementwise add of two feature maps of different shapes inside one layer: a residual
    whose branches disagree. `failed`: torch refused to broadcast them (the forward crashed)."""

    layer: int
    shapes: tuple[Shape, Shape]
    failed: bool


@dataclass(frozen=True)
class SizeTrace:
    """One forward at one input size."""

    img: tuple[int, int]  # (height, width)
    layers: tuple[LayerTrace, ...] = ()
    failed_layer: int | None = None
    error: str | None = None
    failed_op: str | None = None  # the torch operation that raised, e.g. "cat"
    adds: tuple[MismatchedAdd, ...] = ()

    @property
    def ok(self) -> bool:
        return self.failed_layer is None

    @property
    def gflops(self) -> float:
        return gflops(sum(layer.macs for layer in self.layers))

    def layer(self, index: int) -> LayerTrace | None:
        """The layer's record, if the forward reached it (the failing layer has inputs only)."""
        for layer in self.layers:
            if layer.index == index:
                return layer
        return None


@dataclass(frozen=True)
class Trace:
    sizes: tuple[SizeTrace, ...] = field(default_factory=tuple)

    @property
    def ok_sizes(self) -> tuple[SizeTrace, ...]:
        return tuple(s for s in self.sizes if s.ok)

    @property
    def failures(self) -> tuple[SizeTrace, ...]:
        return tuple(s for s in self.sizes if not s.ok)


def trace(built: BuiltModel, sizes: list[tuple[int, int]], batch: int = 1) -> Trace:
    """Run the built network at every (height, width) in `sizes` and record shapes and cost.

    Receptive fields are traced at the first size only: they do not depend on it.
    """
    return Trace(tuple(_trace_one(built, img, batch, receptive_field=(i == 0))
                       for i, img in enumerate(sizes)))


def _trace_one(built: BuiltModel, img: tuple[int, int], batch: int,
               receptive_field: bool) -> SizeTrace:
    net = built.model
    inputs: dict[int, tuple[Shape, ...]] = {}
    outputs: dict[int, tuple[Shape, int | None]] = {}  # shapes only: no tensor is kept alive
    fields: dict[int, float] = {}
    macs: dict[int, int] = {}
    modern = built.dialect.profiler == MODERN_PROFILER
    ops = _OperationProbe(receptive_field, count_products=modern)
    handles = []

    def record_input(index: int):
        def hook(module, args):
            ops.layer = index
            inputs[index] = tuple(_shape(a) for a in args)
        return hook

    def record_output(index: int):
        def hook(module, args, output):
            outputs[index] = (_shape(output), _stride(output, img))
            if receptive_field:
                fields[index] = ops.receptive_field(output)
        return hook

    def count_macs(index: int):
        def hook(module, args, output):
            macs[index] = macs.get(index, 0) + _macs(module, args[0] if args else None, output,
                                                     modern)
        return hook

    def records() -> tuple[LayerTrace, ...]:
        return tuple(LayerTrace(i, shape, stride, macs.get(i, 0) + ops.products.get(i, 0),
                                inputs.get(i, ()), fields.get(i))
                     for i, (shape, stride) in sorted(outputs.items()))

    was_training = net.training
    try:
        for index, layer in enumerate(net.model):
            handles.append(layer.register_forward_pre_hook(record_input(index)))
            handles.append(layer.register_forward_hook(record_output(index)))
            for leaf in layer.modules():
                if type(leaf) in _COUNTED:
                    handles.append(leaf.register_forward_hook(count_macs(index)))
        net.eval()
        x = torch.zeros(batch, built.spec.ch, *img, device=built.device)
        ops.start(x)
        with torch.no_grad(), shape_only(built.device), ops:
            try:
                result = net(x)
            except LayerFailed as e:
                # The failing layer has inputs but no output: keep what it received.
                partial = records() + ((LayerTrace(e.index, None, None, 0,
                                                   inputs.get(e.index, ())),)
                                       if e.index not in outputs else ())
                return SizeTrace(img, partial, e.index, f"{type(e.error).__name__}: {e.error}",
                                 ops.failed_op, tuple(ops.adds))
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
        ops.forget()
    head = built.head_index
    if head is not None:
        outputs[head] = (_shape(result), None)
    return SizeTrace(img, records(), adds=tuple(ops.adds))


class _OperationProbe(TorchFunctionMode):
    """Watches every torch operation of one forward: which one raised, which adds of feature
    maps disagree in shape, and (optionally) each tensor's theoretical receptive field.

    With `count_products`, the multiply-adds of matrix products run outside any counted module
    (attention's q @ k and attn @ v) are counted per layer, as the profiler of Ultralytics
    (ultralytics-thop 2.2) counts them: one per output element per contracted element.

    Receptive field (rf, in input pixels) and jump (input pixels per step) follow the usual
    recurrence: a k-tap kernel with dilation d widens rf by (k - 1) * d * jump, and its stride
    multiplies jump; resampling scales jump by the size ratio; attention and global pooling see
    the whole input (rf = inf); anything else (padding included) keeps the widest rf of its
    inputs and their jump.
    """

    _ADDS = frozenset({"add", "add_", "__add__", "__iadd__", "__radd__"})
    _POOLS = frozenset({"max_pool2d", "avg_pool2d", "_max_pool2d", "max_pool2d_with_indices"})
    _GLOBAL = frozenset({"multi_head_attention_forward", "scaled_dot_product_attention",
                         "adaptive_avg_pool2d", "adaptive_max_pool2d", "bmm", "matmul",
                         "baddbmm"})

    _PRODUCTS = frozenset({"matmul", "__matmul__", "bmm"})

    def __init__(self, receptive_field: bool, count_products: bool = False):
        super().__init__()
        self.track = receptive_field
        self.count_products = count_products
        self.products: dict[int, int] = {}
        self.layer: int | None = None
        self.adds: list[MismatchedAdd] = []
        self.failed_op: str | None = None
        self._fields: dict[int, tuple[float, float]] = {}
        self._alive: list[torch.Tensor] = []  # ids stay unique while their tensors live

    def start(self, image: torch.Tensor) -> None:
        if self.track:
            self._remember(image, (1.0, 1.0))

    def forget(self) -> None:
        self._fields.clear()
        self._alive.clear()

    def receptive_field(self, output: Any) -> float | None:
        if isinstance(output, torch.Tensor) and id(output) in self._fields:
            return self._fields[id(output)][0]
        return None

    def __torch_function__(self, func, types=(), args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        mismatch = self._mismatched_maps(args) if name in self._ADDS else None
        try:
            out = func(*args, **kwargs)
        except Exception:
            self.failed_op = name
            if mismatch is not None:
                self.adds.append(MismatchedAdd(self.layer, mismatch, True))
            raise
        if mismatch is not None:
            self.adds.append(MismatchedAdd(self.layer, mismatch, False))
        if self.count_products and self.layer is not None:
            self._count_product(name, args, kwargs, out)
        if self.track:
            self._propagate(func, name, args, kwargs, out)
        return out

    def _count_product(self, name: str, args, kwargs, out) -> None:
        if name in self._PRODUCTS and isinstance(out, torch.Tensor) and args:
            macs = out.numel() * args[0].shape[-1]
        elif name == "einsum" and isinstance(out, torch.Tensor):
            macs = _einsum_macs(args)
        elif name == "scaled_dot_product_attention" and isinstance(out, torch.Tensor):
            q, k, v = (list(args) + [kwargs.get(n) for n in ("query", "key", "value")])[:3]
            macs = out.numel() // v.shape[-1] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        else:
            return
        self.products[self.layer] = self.products.get(self.layer, 0) + macs

    @staticmethod
    def _mismatched_maps(args) -> tuple[Shape, Shape] | None:
        tensors = [a for a in args[:2] if isinstance(a, torch.Tensor)]
        # A learnt (1, c, 1, 1) term (YOLOR's implicit layers in YOLOv7's heads) broadcasts by
        # design: only two feature maps make a shortcut.
        if len(tensors) == 2 and all(t.dim() == 4 and not isinstance(t, nn.Parameter)
                                     for t in tensors):
            a, b = (list(t.shape) for t in tensors)
            if a != b:
                return a, b
        return None

    def _remember(self, tensor: torch.Tensor, rf_jump: tuple[float, float]) -> None:
        self._fields[id(tensor)] = rf_jump
        self._alive.append(tensor)

    def _propagate(self, func, name: str, args, kwargs, out) -> None:
        known = [(t, self._fields[id(t)]) for t in _tensors(args) if id(t) in self._fields]
        if not known:
            return
        source, (rf, jump) = max(known, key=lambda k: k[1][0])
        step = jump
        if name in self._GLOBAL:
            rf = math.inf
        elif func is F.conv2d or func is F.conv_transpose2d:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            dilation = _pair(_argument(args, kwargs, 5, "dilation", 1))
            rf += max((k - 1) * d for k, d in zip(weight.shape[-2:], dilation)) * jump
            stride = max(_pair(_argument(args, kwargs, 3, "stride", 1)))
            step = jump / stride if func is F.conv_transpose2d else jump * stride
        elif name in self._POOLS:
            kernel = max(_pair(_argument(args, kwargs, 1, "kernel_size", 1)))
            rf += (kernel - 1) * jump
            step = jump * max(_pair(_argument(args, kwargs, 2, "stride", None) or kernel))
        elif name == "interpolate" and source.dim() == 4:
            resized = next((t for t in _tensors((out,)) if t.dim() == 4), None)
            if resized is not None and resized.shape[-1]:
                step = jump * source.shape[-1] / resized.shape[-1]
        for tensor in _tensors(out if isinstance(out, (list, tuple)) else (out,)):
            self._remember(tensor, (rf, step))


def _einsum_macs(args) -> int:
    """A two-operand einsum's multiply-adds: the product of the sizes of its labels (each
    summed or kept); 0 for other forms, as the profiler leaves them."""
    equation, *operands = args
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])
    lhs, _, out = equation.replace(" ", "").partition("->")
    if len(operands) != 2 or "..." in lhs:
        return 0
    sizes: list[dict[str, int]] = [dict(zip(labels, t.shape))
                                   for labels, t in zip(lhs.split(","), operands)]
    total = 1
    for label in sizes[0].keys() | sizes[1].keys():
        if (label in sizes[0] and label in sizes[1]) or label in out:
            total *= sizes[0].get(label, sizes[1].get(label))
    return total


def _tensors(values) -> list[torch.Tensor]:
    found = []
    for v in values:
        if isinstance(v, torch.Tensor):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            found.extend(t for t in v if isinstance(t, torch.Tensor))
    return found


def _argument(args, kwargs, position: int, name: str, default: Any) -> Any:
    if len(args) > position:
        return args[position]
    return kwargs.get(name, default)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return (value[0], value[-1])
    return (value, value)


# thop matches classes exactly: a Linear subclass (attention's out_proj) is not counted.
_COUNTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm2d)


def _shape(output: Any) -> Shape:
    if isinstance(output, torch.Tensor):
        return list(output.shape)
    if isinstance(output, (list, tuple)):
        return [_shape(o) for o in output]
    return None


def _stride(output: Any, img: tuple[int, int]) -> int | None:
    if isinstance(output, torch.Tensor) and output.dim() == 4:
        return img[1] // output.shape[-1]
    return None


def _macs(module: nn.Module, x: torch.Tensor | None, output: torch.Tensor,
          modern: bool = False) -> int:
    """Multiply-adds as thop (the profiler behind YOLOv5's GFLOPs) counts them.

    Convolutions: output elements x (input channels / groups) x kernel area, bias not counted;
    linear maps: output elements x input features; BatchNorm: 2 per element, doubled when
    affine. Activations, pooling, upsampling and attention's inner products count zero there.
    With these rules yolov5s is 16.6 GFLOPs at 640, as YOLOv5 prints. `modern`
    (ultralytics-thop 2.2): a transposed convolution walks its input, input elements x
    (output channels / groups) x kernel area.
    """
    if modern and isinstance(module, nn.ConvTranspose2d) and x is not None:
        kernel = module.kernel_size[0] * module.kernel_size[1]
        return x.numel() * (module.out_channels // module.groups) * kernel
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        return output.numel() * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.BatchNorm2d):
        return output.numel() * (4 if module.affine else 2)
    return output.numel() * module.in_features
