"""Gradient flow measured: one real forward and backward of the dialect's loss, layer by layer.

`measure` runs a built model in train mode on one batch under the probe, backpropagates each
term of the loss (YOLOv5's: box, objectness, class) in turn (their gradients add up to the total's)
and records per YAML layer the gradient norm of its parameters, that norm over the weight norm,
the share of exactly-zero gradient entries, the ReLU-family units that are zero over the whole
batch, whether its output was finite and how much gradient reached it; per residual add what
the shortcut and what the branch carry; then it runs the forward and backward again with every
shortcut removed, to measure what they are worth at the earliest layers. This is where the loss
is chosen (the family's, scaled as train.py scales it). The model is left exactly as it was
found: BatchNorm buffers, `training` flags, `requires_grad` and `.grad` are restored, even
when something raises. Nothing here judges the numbers: checks/gradients.py does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from yolodiag.build.builder import BuiltModel
from yolodiag.gradflow.probe import _Probe, _square
from yolodiag.gradflow.values import (
    Ablation,
    GradFlow,
    LayerGradient,
    ResidualAdd,
    _total,
)
from yolodiag.probes import preserved


def measure(built: BuiltModel, images: Tensor, targets: Tensor,
            hyp: Mapping[str, float] | None = None, *, ablate: bool = True) -> GradFlow:
    """One train-mode forward of `images` (batch, 3, h, w), the dialect's loss against `targets`
    (n, 6), and one backward of each of its terms in turn (their gradients add up to the
    total's); then, with `ablate`, a forward and backward with every residual shortcut
    removed. `hyp` defaults to hyp.scratch-low's gains scaled as train.py scales them (class
    count, image size, levels), so the terms weigh what they weigh in training. The model is
    restored afterwards."""
    net, objective = built.model, built.dialect.loss
    needs = built.dialect.model.untrainable(built)
    if needs is not None:
        raise ValueError(f"gradflow measures models with {needs} (this one ends in "
                         f"{type(net.model[-1]).__name__})")
    batch, img = images.shape[0], tuple(images.shape[-2:])
    hyp = hyp or objective.train_hyp(objective.HYP, net.head.nc, max(img), net.head.nl)
    # Parameters the family's trainer always keeps frozen (Ultralytics' DFL bins) are no
    # layer's to learn: neither measured nor reported as frozen.
    fixed = getattr(built.dialect.model, "ALWAYS_FROZEN", ())
    layer_params = [[(name, p) for name, p in layer.named_parameters()
                     if not any(part in f".{name}" for part in fixed)] for layer in net.model]
    with preserved(net):
        measured = [p for group in layer_params for _, p in group]
        frozen = {p for p in measured if not p.requires_grad}
        for p in measured:
            p.requires_grad_(True)
            p.grad = None
        net.train()
        with _Probe(net, img) as probe:
            raw = net(images)
        unscaled = objective.loss_terms(net.head, raw, targets, hyp)
        total = _sum(unscaled) * batch  # compute_loss's expression, to the last bit
        terms = [term * batch for term in unscaled]
        components = _backward_terms(terms, layer_params)
        probe.recording = False
        layers = tuple(_layer_gradient(i, built, params, frozen, probe,
                                       {c: comp[i] for c, comp in zip(objective.TERMS,
                                                                      components)})
                       for i, params in enumerate(layer_params))
        adds = tuple(probe.split(record) for record in probe.records)
        missing = tuple(probe.missing_adds())
        loss = {"total": float(total.detach()),
                **{c: float(t.detach()) for c, t in zip(objective.TERMS, terms)}}
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


def _sum(terms) -> Tensor:
    """The terms added left to right, as each family's loss adds them."""
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _backward_terms(terms: list[Tensor], layer_params) -> list[list[float]]:
    """Backpropagate the loss terms one after the other. `.grad` (and every tensor hook) sums
    them, which is the total loss's gradient, for one backward per term and none more for the
    total; each term's own gradient is what its backward added. Returns, per term, the norm of
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
    total = _sum(built.dialect.loss.loss_terms(net.head, raw, targets, hyp)) * images.shape[0]
    total.backward()
    head = len(layer_params) - 1
    return Ablation(early, len(drop), _total(layers[i].grad_norm for i in early),
                    _grad_norm(layer_params, early), layers[head].grad_norm,
                    _grad_norm(layer_params, [head]), loss_with, float(total.detach()))


def _grad_norm(layer_params, indices) -> float:
    """The norm of the current `.grad` of these layers' parameters together."""
    return math.sqrt(sum(float(_square(p.grad)) for i in indices for _, p in layer_params[i]
                         if p.grad is not None))
