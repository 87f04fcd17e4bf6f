"""What the anchor-based families' trainers share for a short run on one batch: the optimiser
their train.py builds, which cells the targets are assigned to, and what the head's bias
initialisation predicts. Each family's `loss`, `model` and `evaluation` parts offer these under
the names the overfit loop calls (`optimizer`, `batch_positives`, `priors`, `candidates`), so a
family whose trainer does otherwise (another optimiser, an assigner that reads the predictions,
no objectness) offers its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from yolodiag.dialects.common.matching import assign


def parameter_groups(model: nn.Module, norm_types: tuple[type, ...] = (
        nn.modules.batchnorm._NormBase,)) -> tuple[list, list, list]:
    """(normalisation weights, other weights, biases): the three groups YOLO trainers give
    their own weight decay (the weights only). `norm_types`: the layers whose weights count as
    normalisation (YOLOv5: BatchNorm and InstanceNorm)."""
    norms, weights, biases = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias":
                biases.append(p)
            elif isinstance(module, norm_types):
                norms.append(p)
            else:
                weights.append(p)
    return norms, weights, biases


def nesterov_sgd(model: nn.Module, settings: Any, nc: int, batch: int
                 ) -> tuple[torch.optim.Optimizer, str]:
    """YOLOv5's and YOLOv7's default optimiser (train.py, hyp.scratch): SGD with Nesterov
    momentum, weight decay on the weights only; `settings` gives lr, momentum, weight_decay."""
    norms, weights, biases = parameter_groups(model)
    optimizer = torch.optim.SGD(norms, lr=settings.lr, momentum=settings.momentum,
                                nesterov=True)
    optimizer.add_param_group({"params": weights, "weight_decay": settings.weight_decay})
    optimizer.add_param_group({"params": biases})
    return optimizer, (f"SGD lr {settings.lr:g}, momentum {settings.momentum:g} (Nesterov), "
                       f"weight decay {settings.weight_decay:g}")


def anchor_positives(built: Any, raw: Any, targets: Tensor, hyp: Mapping[str, float]
                     ) -> tuple[tuple[int, ...], int]:
    """(positives per level, targets no anchor takes) of the anchor matcher for the grids of a
    train-mode output `raw`."""
    grids = [tuple(r.shape[2:4]) for r in built.model.head.raw_maps(raw)]
    assignment = assign(targets, built.anchors.to(targets.device), grids, hyp["anchor_t"])
    return tuple(assignment.positives), len(assignment.unmatched)


def anchor_head_priors(head: nn.Module) -> tuple[tuple[float, float, float], ...]:
    """(stride, objectness, class probability) the head's biases give before training, per
    level."""
    priors = []
    with torch.no_grad():
        for conv, stride in zip(head.m, head.stride.tolist()):
            bias = conv.bias.view(head.na, -1).float()
            priors.append((stride, float(bias[:, 4].sigmoid().mean()),
                           float(bias[:, 5:].sigmoid().mean()) if head.nc > 1 else 1.0))
    return tuple(priors)


def objectness_candidates(decoded: Tensor, conf: float) -> int:
    """Predictions (b, n, 5 + nc) whose objectness and best confidence pass `conf`: what NMS
    starts from."""
    scores = decoded[..., 4:5] * decoded[..., 5:] if decoded.shape[-1] > 6 else decoded[..., 4:5]
    return int(((decoded[..., 4] > conf) & (scores.amax(-1) > conf)).sum())
