"""Shape and cost tracing: one eval-mode forward per image size, on the meta device.

For each requested (height, width) the built network runs once on a meta tensor (shapes only,
no activation memory) with a forward hook on every layer, recording each layer's output shape,
its stride (input width / output width, as YOLOv5's summary measures it) and its multiply-adds
counted as YOLOv5's profiler counts them. Hooks are removed and the train/eval mode restored in a
`finally`, whatever happens; a failing forward names the layer and the image size. The head's
entry is the model's output in YOLOv5's eval form, e.g. (decoded, raw maps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from yolodiag.reference.builder import BuiltModel, LayerFailed
from yolodiag.reference.meta import shape_only

Shape = Any  # a list of ints, or nested lists for layers with several outputs


def gflops(macs: int) -> float:
    """YOLOv5's convention: 2 x multiply-adds, in units of 1e9."""
    return 2 * macs / 1e9


@dataclass(frozen=True)
class LayerTrace:
    index: int
    out_shape: Shape
    stride: int | None  # input width // output width; None for multi-output layers
    macs: int  # multiply-adds, counted as YOLOv5's profiler (thop) counts them

    @property
    def gflops(self) -> float:
        return gflops(self.macs)


@dataclass(frozen=True)
class SizeTrace:
    """One forward at one input size."""

    img: tuple[int, int]  # (height, width)
    layers: tuple[LayerTrace, ...] = ()
    failed_layer: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed_layer is None

    @property
    def gflops(self) -> float:
        return gflops(sum(layer.macs for layer in self.layers))


@dataclass(frozen=True)
class Trace:
    sizes: tuple[SizeTrace, ...] = field(default_factory=tuple)


def trace(built: BuiltModel, sizes: list[tuple[int, int]], batch: int = 1) -> Trace:
    """Run the built network at every (height, width) in `sizes` and record shapes and cost."""
    return Trace(tuple(_trace_one(built, img, batch) for img in sizes))


def _trace_one(built: BuiltModel, img: tuple[int, int], batch: int) -> SizeTrace:
    net = built.model
    outputs: dict[int, tuple[Shape, int | None]] = {}  # shapes only: no tensor is kept alive
    macs: dict[int, int] = {}
    handles = []

    def record_output(index: int):
        def hook(module, inputs, output):
            outputs[index] = (_shape(output), _stride(output, img))
        return hook

    def count_macs(index: int):
        def hook(module, inputs, output):
            macs[index] = macs.get(index, 0) + _macs(module, output)
        return hook

    was_training = net.training
    try:
        for index, layer in enumerate(net.model):
            handles.append(layer.register_forward_hook(record_output(index)))
            for leaf in layer.modules():
                if type(leaf) in _COUNTED:
                    handles.append(leaf.register_forward_hook(count_macs(index)))
        net.eval()
        x = torch.zeros(batch, built.spec.ch, *img, device=built.device)
        with torch.no_grad(), shape_only(built.device):
            try:
                result = net(x)
            except LayerFailed as e:
                return SizeTrace(img, _records(outputs, macs), e.index,
                                 f"{type(e.error).__name__}: {e.error}")
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    head = built.head_index
    if head is not None:
        outputs[head] = (_shape(result), None)
    return SizeTrace(img, _records(outputs, macs))


# thop matches classes exactly: a Linear subclass (attention's out_proj) is not counted.
_COUNTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm2d)


def _records(outputs: dict[int, tuple[Shape, int | None]],
             macs: dict[int, int]) -> tuple[LayerTrace, ...]:
    return tuple(LayerTrace(i, shape, stride, macs.get(i, 0))
                 for i, (shape, stride) in sorted(outputs.items()))


def _shape(output: Any) -> Shape:
    if isinstance(output, torch.Tensor):
        return list(output.shape)
    return [_shape(o) for o in output]


def _stride(output: Any, img: tuple[int, int]) -> int | None:
    if isinstance(output, torch.Tensor) and output.dim() == 4:
        return img[1] // output.shape[-1]
    return None


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-adds as thop (the profiler behind YOLOv5's GFLOPs) counts them.

    Convolutions: output elements x (input channels / groups) x kernel area, bias not counted;
    linear maps: output elements x input features; BatchNorm: 2 per element, doubled when
    affine. Activations, pooling, upsampling and attention's inner products count zero there.
    With these rules yolov5s is 16.6 GFLOPs at 640, as YOLOv5 prints.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        return output.numel() * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.BatchNorm2d):
        return output.numel() * (4 if module.affine else 2)
    return output.numel() * module.in_features
