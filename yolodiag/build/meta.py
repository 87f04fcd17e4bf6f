"""Shape-only forwards on the meta device, as fast as the shapes allow.

`check` runs every forward on meta tensors: no weights, no activations, shapes only. Parts of
torch's meta path cost more than our whole build and trace, so `shape_only()` steps around them
for the duration of a forward and leaves torch exactly as it found it:

- batch_norm's meta implementation is a Python decomposition taking milliseconds per call
  (0.9 s of a three-size yolov5x6 check); on meta tensors it returns its input (same shape)
  after the one check that can fail, the channel count.
- conv2d (and its transpose) is one formula; its channel check is made as the CPU kernel makes
  it, with its message, which names both widths where the meta kernel says only "Invalid channel
  dimensions". Anything out of the ordinary (string padding, a kernel larger than its input) is
  left to torch. An add or mul of two equal maps needs no broadcasting or type promotion.
- the meta kernels ask torch.fx's symbolic shapes about plain ints and bools (`guard_or_false`
  and a dozen others), and `import sympy` to rule out sympy expressions: their first import
  costs 0.27 s, a fifth of a yolo11x check. Stand-ins answer those questions for plain values;
  a symbolic value, or any other question, hands over to the real module for good.
- the meta kernels of add, cat, relu and others are Python references wrapped in
  `torch._disable_dynamo`, whose first call imports torch._dynamo (1.5-1.8 s). Nothing is
  compiled during a shape trace, so that import is answered by a stand-in whose `disable`
  returns the function unchanged; afterwards every cached wrapper is forgotten.

Every stand-in leaves when the forward ends, and a later call imports the real module as usual.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_DYNAMO = "torch._dynamo"
_SYMBOLIC_SHAPES = "torch.fx.experimental.symbolic_shapes"


class _ShapeOnlyKernels(TorchFunctionMode):
    def __torch_function__(self, func, types=(), args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d or func is F.conv_transpose2d:
            out = _convolved(func is F.conv_transpose2d, *_conv_arguments(func, args, kwargs))
            if out is not None:
                return out
        if _same_shape_pair(func, args, kwargs):
            # The Python reference of add and mul works out broadcasting and type promotion
            # (0.1 ms a call): two equal meta maps need neither.
            return args[0] if func.__name__ in _IN_PLACE else torch.empty_like(args[0])
        if func is F.batch_norm and args and args[0].device.type == "meta":
            x, statistics = args[0], args[1] if len(args) > 1 else kwargs.get("running_mean")
            if statistics is not None and x.shape[1] != statistics.shape[0]:
                # The check torch's own kernel makes: a mismatch must still fail on meta.
                raise RuntimeError(f"running_mean should contain {x.shape[1]} elements "
                                   f"not {statistics.shape[0]}")
            return x
        return func(*args, **kwargs)


_SAME_SHAPE_OPS = frozenset({"add", "__add__", "__radd__", "mul", "__mul__", "__rmul__",
                             "add_", "__iadd__", "mul_", "__imul__"})
_IN_PLACE = frozenset({"add_", "__iadd__", "mul_", "__imul__"})


def _same_shape_pair(func: Callable, args: tuple, kwargs: dict) -> bool:
    if kwargs or len(args) != 2 or getattr(func, "__name__", "") not in _SAME_SHAPE_OPS:
        return False
    a, b = args
    return (type(a) is torch.Tensor and type(b) is torch.Tensor and a.device.type == "meta"
            and b.device.type == "meta" and a.shape == b.shape and a.dtype == b.dtype)


_CONV_PARAMETERS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_TRANSPOSE_PARAMETERS = ("input", "weight", "bias", "stride", "padding", "output_padding",
                              "groups", "dilation")
_CONV_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "output_padding": 0, "dilation": 1,
                  "groups": 1}


def _conv_arguments(func: Callable, args: tuple, kwargs: dict) -> tuple:
    names = _CONV_TRANSPOSE_PARAMETERS if func is F.conv_transpose2d else _CONV_PARAMETERS
    given = {**_CONV_DEFAULTS, **dict(zip(names, args)), **kwargs}
    return tuple(given.get(name) for name in (*_CONV_PARAMETERS, "output_padding"))


def _pair(value) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int)
                                                                   for v in value):
        return value[0], value[1]
    return None  # a string padding ("same") or a shape torch should judge


def _convolved(transposed: bool, x, weight, bias, stride, padding, dilation, groups,
               output_padding) -> torch.Tensor | None:
    """The empty output of a batched 2-D convolution on meta tensors; None leaves it to torch."""
    steps = [_pair(v) for v in (stride, padding, dilation, output_padding)]
    if (not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor) or x.dim() != 4
            or weight.dim() != 4 or x.device.type != "meta" or weight.device.type != "meta"
            or not isinstance(groups, int)
            or None in steps or groups < 1 or weight.shape[0] % groups):
        return None
    (s, p, d, extra) = steps
    if min(s + d) < 1 or min(p + extra) < 0 or any(e >= max(s[i], d[i]) for i, e in
                                                   enumerate(extra)):
        return None
    width = weight.shape[0] if transposed else weight.shape[1] * groups
    if x.shape[1] != width:
        kind = "transposed=1" if transposed else f"groups={groups}"
        raise RuntimeError(f"Given {kind}, weight of size {list(weight.shape)}, expected "
                           f"input{list(x.shape)} to have {width} channels, but got "
                           f"{x.shape[1]} channels instead")
    channels = weight.shape[1] * groups if transposed else weight.shape[0]
    kernel = weight.shape[2:]
    if transposed:
        size = [(n - 1) * s[i] - 2 * p[i] + d[i] * (kernel[i] - 1) + extra[i] + 1
                for i, n in enumerate(x.shape[2:])]
    else:
        size = [(n + 2 * p[i] - d[i] * (kernel[i] - 1) - 1) // s[i] + 1
                for i, n in enumerate(x.shape[2:])]
    if min(size) < 1 or (bias is not None and bias.shape != (channels,)):
        return None  # torch's own error says it best
    return x.new_empty((x.shape[0], channels, *size))


@contextlib.contextmanager
def _stand_in(name: str, answers: dict[str, Callable]) -> Iterator[None]:
    """`name` answered by `answers` until the block ends. The moment anything else is asked of
    it, the real module is imported for good (and the stand-in takes on its namespace); a module
    already loaded is never shadowed."""
    if name in sys.modules:  # already paid for: nothing to save
        yield
        return

    def anything_else(attribute: str):
        if attribute.startswith("__"):  # `from m import f` asks whether m has a __path__
            raise AttributeError(attribute)
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        real = importlib.import_module(name)
        # Whoever imported the stand-in holds it: from now on it is the real module's namespace.
        stand_in.__dict__.update(real.__dict__)
        return getattr(real, attribute)

    stand_in = types.ModuleType(name)
    stand_in.__dict__.update(answers)
    stand_in.__getattr__ = anything_else  # PEP 562: consulted for missing attributes
    sys.modules[name] = stand_in
    parent, _, child = name.rpartition(".")
    try:
        yield
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        if parent and sys.modules[parent].__dict__.get(child) is stand_in:
            delattr(sys.modules[parent], child)


@contextlib.contextmanager
def _dynamo_stand_in() -> Iterator[None]:
    seen: list[Callable] = []

    def disable(fn: Callable, *args, **kwargs) -> Callable:
        seen.append(fn)
        return fn

    with _stand_in(_DYNAMO, {"disable": disable}):
        try:
            yield
        finally:
            for fn in seen:  # torch caches the wrapper on the function: forget it
                getattr(fn, "__dict__", {}).pop("__dynamo_disable", None)


_PLAIN = frozenset({bool, int, float})  # the common case, tested first: a bool to guard on


def _sizes_are_plain(values) -> bool:
    return not any(isinstance(v, (torch.SymInt, torch.SymFloat, torch.SymBool))
                   or (isinstance(v, (tuple, list)) and not _sizes_are_plain(v)) for v in values)


def _plain_sym_eq(x, y) -> bool:
    if isinstance(x, (tuple, list)) and isinstance(y, (tuple, list)):
        return len(x) == len(y) and all(_plain_sym_eq(a, b) for a, b in zip(x, y))
    return x == y


# What the meta kernels ask of symbolic shapes, answered for plain ints and bools (a meta trace
# has no others); a symbolic argument goes to the real function.
_PLAIN_SHAPE_ANSWERS: dict[str, Callable] = {
    "guard_or_false": bool, "guard_or_true": bool, "statically_known_true": bool,
    "guard_size_oblivious": bool, "expect_true": lambda value, skip=0: bool(value),
    "guard_int": int, "guarding_hint_or_throw": lambda value: value,
    "has_guarding_hint": lambda value: True, "is_nested_int": lambda value: False,
    "sym_and": lambda *values: all(values), "sym_or": lambda *values: any(values),
    "sym_eq": _plain_sym_eq, "free_unbacked_symbols": lambda value: set(),
}


class _NoExpression:
    """No value of a meta trace is a sympy expression: isinstance against this is always False."""


@contextlib.contextmanager
def _symbolic_stand_ins() -> Iterator[None]:
    with _stand_in("sympy", {"Basic": _NoExpression}), _symbolic_shapes_stand_in():
        yield


def _symbolic_shapes_stand_in() -> contextlib.AbstractContextManager:
    def answer(name: str, plain: Callable) -> Callable:
        def answered(*args, **kwargs):
            if (all(type(a) in _PLAIN for a in args) and not kwargs) or (
                    _sizes_are_plain(args) and _sizes_are_plain(kwargs.values())):
                return plain(*args, **kwargs)
            return getattr(importlib.import_module(_SYMBOLIC_SHAPES), name)(*args, **kwargs)
        return answered

    return _stand_in(_SYMBOLIC_SHAPES, {name: answer(name, plain)
                                        for name, plain in _PLAIN_SHAPE_ANSWERS.items()})


@contextlib.contextmanager
def shape_only(device: torch.device) -> Iterator[None]:
    """Around a forward on the meta device; does nothing on real devices."""
    if device.type != "meta":
        yield
        return
    with _dynamo_stand_in(), _symbolic_stand_ins(), _ShapeOnlyKernels():
        yield
