"""Shape-only forwards on the meta device, as fast as the shapes allow.

`check` runs every forward on meta tensors: no weights, no activations, shapes only. Two parts
of torch's meta path cost more than our whole build and trace, so `shape_only()` steps around
them for the duration of a forward and leaves torch exactly as it found it:

- batch_norm's meta implementation is a Python decomposition taking milliseconds per call
  (0.9 s of a three-size yolov5x6 check); on meta tensors it returns its input (same shape)
  after the one check that can fail, the channel count.
- the meta kernels of add, cat, relu and others are Python references wrapped in
  `torch._disable_dynamo`, whose first call imports torch._dynamo (1.5-1.8 s). Nothing is
  compiled during a shape trace, so that import is answered by a stand-in whose `disable`
  returns the function unchanged (should torch ask it for anything else, it hands over to the
  real module); afterwards the stand-in and every cached wrapper are removed, and a later call
  imports the real torch._dynamo as usual.
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


class _ShapeOnlyNorms(TorchFunctionMode):
    def __torch_function__(self, func, types=(), args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm and args and args[0].device.type == "meta":
            x, statistics = args[0], args[1] if len(args) > 1 else kwargs.get("running_mean")
            if statistics is not None and x.shape[1] != statistics.shape[0]:
                # The check torch's own kernel makes: a mismatch must still fail on meta.
                raise RuntimeError(f"running_mean should contain {x.shape[1]} elements "
                                   f"not {statistics.shape[0]}")
            return x
        return func(*args, **kwargs)


@contextlib.contextmanager
def _dynamo_stand_in() -> Iterator[None]:
    if _DYNAMO in sys.modules:  # already paid for: nothing to save
        yield
        return
    seen: list[Callable] = []

    def disable(fn: Callable, *args, **kwargs) -> Callable:
        seen.append(fn)
        return fn

    def anything_else(name: str):
        # torch asked for more than `disable`: hand over to the real module for good.
        if sys.modules.get(_DYNAMO) is stand_in:
            del sys.modules[_DYNAMO]
        return getattr(importlib.import_module(_DYNAMO), name)

    stand_in = types.ModuleType(_DYNAMO)
    stand_in.disable = disable
    stand_in.__getattr__ = anything_else  # PEP 562: consulted for missing attributes
    sys.modules[_DYNAMO] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(_DYNAMO) is stand_in:
            del sys.modules[_DYNAMO]
        if torch.__dict__.get("_dynamo") is stand_in:
            del torch._dynamo
        for fn in seen:  # torch caches the wrapper on the function: forget it
            getattr(fn, "__dict__", {}).pop("__dynamo_disable", None)


@contextlib.contextmanager
def shape_only(device: torch.device) -> Iterator[None]:
    """Around a forward on the meta device; does nothing on real devices."""
    if device.type != "meta":
        yield
        return
    with _dynamo_stand_in(), _ShapeOnlyNorms():
        yield
