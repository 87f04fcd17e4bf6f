"""What Ultralytics 8.4.190's trainer does around the loss for a short run on one batch: the
optimiser `optimizer=auto` picks, and the EMA of the weights its validation scores.

`optimizer=auto` (engine/trainer.py, build_optimizer) takes AdamW when the run has at most
10,000 iterations, which every run on one batch has: lr0 = round(0.002 * 5 / (4 + nc), 6),
betas (0.9, 0.999), weight decay on the weights only (not on normalisation weights or biases),
scaled by batch * accumulate / nbs with accumulate = max(round(nbs / batch), 1), nbs 64.
The EMA (utils/torch_utils.py, ModelEMA) follows every optimiser step with decay
0.9999 * (1 - exp(-updates / 2000)): near 0 for the first updates, so early in a run the EMA is
nearly the latest weights, and only after thousands of updates an average.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from yolodiag.dialects.common.training import parameter_groups
from yolodiag.dialects.ultralytics.heads import class_prior_logit

NOMINAL_BATCH = 64  # cfg/default.yaml nbs
WEIGHT_DECAY = 5e-4  # cfg/default.yaml weight_decay
ADAM_BETAS = (0.9, 0.999)  # momentum 0.9 as beta1
EMA_DECAY = 0.9999
EMA_TAU = 2000
BOX_PRIOR_LOGIT = 2.0  # what bias_init gives every box bin
# Every torch.nn layer with "Norm" in its name: its weights get no decay (LayerNorm too).
NORM_TYPES = tuple(v for k, v in vars(nn).items() if "Norm" in k and isinstance(v, type))


def auto_lr(nc: int) -> float:
    """optimizer=auto's lr0 for a short run."""
    return round(0.002 * 5 / (4 + nc), 6)


def optimizer(model: nn.Module, settings: Any, nc: int, batch: int
              ) -> tuple[torch.optim.Optimizer, str]:
    """AdamW as optimizer=auto builds it for a run of at most 10,000 iterations (`settings`'
    SGD values are YOLOv5's and are not used)."""
    accumulate = max(round(NOMINAL_BATCH / batch), 1)
    decay = WEIGHT_DECAY * batch * accumulate / NOMINAL_BATCH
    lr = auto_lr(nc)
    norms, weights, biases = parameter_groups(model, NORM_TYPES)
    built = torch.optim.AdamW(biases, lr=lr, betas=ADAM_BETAS, weight_decay=0.0)
    built.add_param_group({"params": weights, "weight_decay": decay})
    built.add_param_group({"params": norms, "weight_decay": 0.0})
    return built, (f"AdamW lr {lr:g}, betas {ADAM_BETAS[0]:g}/{ADAM_BETAS[1]:g}, weight decay "
                   f"{decay:g} (Ultralytics' optimizer=auto for a run under 10,000 iterations)")


def ema_decay(updates: int) -> float:
    """ModelEMA's decay at its `updates`-th update."""
    return EMA_DECAY * (1 - math.exp(-updates / EMA_TAU))


def prior_output(built: Any, grid_shapes: Sequence[tuple[int, int]], batch: int
                 ) -> dict[str, Any]:
    """A train-mode output holding only the head's bias priors, as a model whose weights were
    all zero would predict: every box logit 2.0 (bias_init), every class logit 8.4.190's
    log(5 / nc / (640 / s)^2) for its level; feature maps of the grids (zeros, the head's input
    widths), which the loss reads only for their sizes. A one-to-one head gets the same for
    both branches."""
    head = built.model.head
    boxes, scores, feats = [], [], []
    for (ny, nx), stride, branch in zip(grid_shapes, built.stride, head.cv2):
        cells = ny * nx
        boxes.append(torch.full((batch, 4 * head.reg_max, cells), BOX_PRIOR_LOGIT))
        scores.append(torch.full((batch, head.nc, cells), class_prior_logit(head.nc, stride)))
        feats.append(torch.zeros(batch, branch[0].conv.in_channels, ny, nx))
    out = {"boxes": torch.cat(boxes, -1), "scores": torch.cat(scores, -1), "feats": feats}
    return {"one2many": out, "one2one": dict(out)} if head.has_one2one else out
