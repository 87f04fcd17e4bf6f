"""Helpers shared by the code that runs a user's model to look at it (gradflow, overfit).

`preserved` restores, on exit and even when something raises, everything a forward and
backward may change in a model: BatchNorm running statistics, `training` flags, `requires_grad`
and `.grad`. It is model-agnostic: it knows no dialect, no head and no loss, and registers no
hooks of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Restore on exit what a probe may change: buffers (BatchNorm running statistics, bit for
    bit), every module's `training` flag, each parameter's `requires_grad` and `.grad`."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for module, training in modes:
            module.training = training
        for p, requires_grad, grad in params:
            p.requires_grad_(requires_grad)
            p.grad = grad
