"""What 8.4.190's `BaseModel.fuse()` does before the final validation of best.pt (AutoBackend
with fuse=True): every Conv, DWConv (and a user's subclass of them: the test is isinstance) with
a `bn` gets the BatchNorm folded into its convolution and its forward replaced by
act(conv(x)); a ConvTranspose with a BatchNorm the same. RepConv's two branches are fused one by
one here (8.4.190 merges them into one kernel: the same function, other rounding). A block of
the user's own with a raw Conv2d and BatchNorm is left as it is, as 8.4.190 leaves it. What the
overfit loop asks: are the fused model's predictions those the unfused model validated?
"""

from __future__ import annotations

import copy
import types

import torch
from torch import nn

from yolodiag.dialects.common.conv import Conv
from yolodiag.dialects.ultralytics.conv import ConvTranspose


def folded(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> nn.Module:
    """`conv` followed by `bn` (in eval mode) as one convolution with a bias."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused = copy.deepcopy(conv).requires_grad_(False)
    weight = conv.weight.detach()
    # Output channels are dimension 0 of a convolution's weight, 1 of a transposed one's
    # (per group).
    if isinstance(conv, nn.ConvTranspose2d):
        groups = conv.groups
        shaped = weight.view(groups, weight.shape[0] // groups, *weight.shape[1:])
        shaped = shaped * scale.view(groups, 1, -1, 1, 1)
        fused.weight = nn.Parameter(shaped.view_as(weight), requires_grad=False)
    else:
        fused.weight = nn.Parameter(weight * scale.view(-1, 1, 1, 1), requires_grad=False)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach(),
                              requires_grad=False)
    return fused


def _conv_then_act(self, x):
    return self.act(self.conv(x))


def _transpose_then_act(self, x):
    return self.act(self.conv_transpose(x))


def fuse(model: nn.Module) -> nn.Module:
    """A fused copy of `model` (the model itself is left alone), in eval mode."""
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if isinstance(module, Conv) and isinstance(getattr(module, "bn", None), nn.BatchNorm2d):
            module.conv = folded(module.conv, module.bn)
            del module.bn
            module.forward = types.MethodType(_conv_then_act, module)
        elif isinstance(module, ConvTranspose) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv_transpose = folded(module.conv_transpose, module.bn)
            del module.bn
            module.forward = types.MethodType(_transpose_then_act, module)
    return fused
