"""ModelSpec -> BuiltModel: the network YOLOv5 v7.0 would build from a YAML, and a record per layer.

The semantics are `parse_model` and `DetectionModel.__init__` of v7.0: repeats scaled by
`depth_multiple` (Python's round), widths by `width_multiple` and rounded up to 8 for the
channel-aware modules, repeats as `nn.Sequential` (or inside the module for the C3 family),
Detect/Segment argument completion, Detect strides measured by a train-mode forward of zeros
at 256x256, anchors flipped when their order disagrees with the strides and divided by them,
the objectness/class bias priors, and BatchNorm eps/momentum. State-dict keys and shapes equal
YOLOv5's. Channel rules live in the module table; this module only applies them. It never
prints, and it leaves no global state behind (the YAML's activation is scoped to one build).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from yolodiag.findings import Finding, InputRefused, Location, Severity
from yolodiag.reference.blocks import default_activation
from yolodiag.reference.heads import Detect
from yolodiag.reference.meta import shape_only
from yolodiag.reference.rules import RuleError, plan
from yolodiag.reference.table import MODULES, ModuleEntry
from yolodiag.spec import Activation, LayerSpec, ModelSpec, absolute_source

STRIDE_PROBE_SIZE = 256  # YOLOv5 measures Detect strides with one 256x256 forward


@dataclass(frozen=True)
class LayerRecord:
    """What was built for one YAML row, in the terms of YOLOv5's model summary."""

    index: int
    from_: int | tuple[int, ...]
    number: int  # repeat count after depth_multiple
    module: str  # the YAML's module name
    type: str  # the class that was built
    args: tuple[Any, ...]  # constructor arguments after channel completion
    params: int  # all repeats
    channels_out: int  # the width parse_model records for later rows
    rule: str
    section: str
    line: int


class LayerFailed(RuntimeError):
    """A forward pass failed inside one layer; says which."""

    def __init__(self, index: int, error: Exception):
        super().__init__(f"layer {index}: {type(error).__name__}: {error}")
        self.index = index
        self.error = error


class DetectionNet(nn.Module):
    """The built network: `self.model` holds the layers (YOLOv5's attribute name, so state-dict
    keys read `model.0.conv.weight`), routed by each layer's `from` as YOLOv5 routes them.

    Train mode returns the head's raw per-level maps; eval mode returns (decoded, raw maps).
    """

    def __init__(self, layers: list[nn.Module], froms: list[int | tuple[int, ...]]):
        super().__init__()
        self.model = nn.Sequential(*layers)
        self.froms = froms
        # Only outputs read by a later non-adjacent layer are kept during forward.
        self.keep = {absolute_source(i, f) for i, fr in enumerate(froms)
                     for f in ((fr,) if isinstance(fr, int) else fr) if f != -1}

    @property
    def head(self) -> Detect | None:
        last = self.model[-1]
        return last if isinstance(last, Detect) else None

    def forward(self, x):
        out = self.run_layers(x)
        head = self.head
        if head is None:
            return out
        try:
            return head.assemble(out, self.training)
        except Exception as e:  # decoding is the head's work: name it
            raise LayerFailed(len(self.model) - 1, e) from e

    def run_layers(self, x):
        """The last layer's own output (for a head: its raw maps), whatever the mode."""
        kept: dict[int, Any] = {}
        for i, (layer, f) in enumerate(zip(self.model, self.froms)):
            if f != -1:  # -1 is the running value x, as in YOLOv5
                x = kept[absolute_source(i, f)] if isinstance(f, int) else [
                    x if j == -1 else kept[absolute_source(i, j)] for j in f]
            try:
                x = layer(x)
            except Exception as e:
                raise LayerFailed(i, e) from e
            if i in self.keep:
                kept[i] = x
        return x


@dataclass
class BuiltModel:
    """A built model and what we know about it without running it on data.

    `stride` and `anchors` (grid units, (nl, na, 2)) are plain CPU values even when the network
    lives on the meta device, so reports never read meta tensors.
    """

    spec: ModelSpec
    model: DetectionNet
    layers: tuple[LayerRecord, ...]
    nc: int
    stride: tuple[float, ...] | None
    anchors: torch.Tensor | None
    device: torch.device
    # With build(strict=False): YOLOv5's stride probe crashed here (layer, "Error: message"),
    # so YOLOv5 could not build this model; strides and anchors are then unknown (None).
    probe_failure: tuple[int, str] | None = None
    anchors_flipped: bool = False  # YOLOv5 reversed the YAML's anchor rows to fit the strides

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def pixel_anchors(self) -> list[list[tuple[float, float]]]:
        """The anchors in pixels, per level: `anchors` times the level's stride."""
        return [[(float(w) * s, float(h) * s) for w, h in level.tolist()]
                for level, s in zip(self.anchors, self.stride)]

    @property
    def head_index(self) -> int | None:
        """The detection head's layer: our Detect/Segment, or a user's head (rule detect)."""
        heads = ("detect", "segment")
        return len(self.layers) - 1 if self.layers and self.layers[-1].rule in heads else None


def build(spec: ModelSpec, *, nc: int | None = None, device: str | torch.device = "cpu",
          modules: dict[str, ModuleEntry] | None = None, strict: bool = True) -> BuiltModel:
    """Build `spec` as YOLOv5 v7.0 would. `nc` overrides the YAML's (as `Model(cfg, nc=...)`).

    `device="meta"` builds shapes only: no weight memory, strides still measured.
    Raises InputRefused (YD202 build-failed) naming the layer when a row cannot be built, or
    when YOLOv5's stride probe would crash; with `strict=False` a crashing probe is recorded in
    `probe_failure` instead, so that the checks can say why it crashed.
    """
    device = torch.device(device)
    table = {**MODULES, **(modules or {})}
    nc = nc or spec.nc
    layers: list[nn.Module] = []
    records: list[LayerRecord] = []
    with default_activation(_activation_factory(spec)), device:
        for planned in plan(spec, table, nc):
            row, done = planned.row, planned.done
            try:
                if done is None:
                    raise planned.error
                cls = planned.entry.load()
                copies = _construct(cls, done.args, done.copies, device)
            except Exception as e:  # whatever a constructor raises on these arguments
                raise _build_failed(spec, row, planned.args, e, planned.entry) from e
            layer = nn.Sequential(*copies) if len(copies) > 1 else copies[0]
            layers.append(layer)
            records.append(LayerRecord(
                index=row.index, from_=row.from_, number=planned.number, module=row.module,
                type=type(copies[0]).__name__, args=_jsonable(done.args),
                params=sum(p.numel() for p in layer.parameters()), channels_out=done.c2,
                rule=planned.entry.rule, section=row.section, line=row.line))
        net = DetectionNet(layers, [r.from_ for r in spec.layers])
    probe_failure, flipped = None, False
    try:
        stride, grid_anchors, flipped = _measure_head(net, spec, records, device)
    except Exception as e:  # YOLOv5's build runs the same forward and anchor arithmetic
        if not isinstance(e, LayerFailed):  # e.g. anchors that cannot be divided by the strides
            e = LayerFailed(len(records) - 1, e)
        during = f"YOLOv5's stride probe (a {STRIDE_PROBE_SIZE}x{STRIDE_PROBE_SIZE} forward)"
        error = f"{type(e.error).__name__}: {e.error}"
        if strict:
            raise forward_failure(spec, e.index, error, during) from e
        stride, grid_anchors, probe_failure = None, None, (e.index, error)
    _initialize_weights(net)
    return BuiltModel(spec, net, tuple(records), nc, stride, grid_anchors, device, probe_failure,
                      flipped)


def _measure_head(net: DetectionNet, spec: ModelSpec, records: list[LayerRecord],
                  device: torch.device
                  ) -> tuple[tuple[float, ...] | None, torch.Tensor | None, bool]:
    """Strides by YOLOv5's probe (train mode, zeros, 256x256), anchor order, grid units, priors.

    A user's head (a --modules class with rule detect) is measured the same way from its
    train-mode output, one map per level; its `stride` and `anchors` are set where it has
    them, and its bias priors are its own business.
    Returns (strides, anchors in grid units, whether the YAML's rows were flipped)."""
    if not records or records[-1].rule not in ("detect", "segment"):
        return None, None, False
    head = net.model[-1]
    size = STRIDE_PROBE_SIZE
    ours = isinstance(head, Detect)
    # Train mode, as YOLOv5: on real tensors the probe leaves the same BatchNorm running
    # statistics behind. On meta there are none, and eval mode skips a slow torch code path;
    # a user's head runs in train mode regardless (its eval mode decodes with the strides).
    net.train(device.type != "meta" or not ours)
    with torch.no_grad(), shape_only(device):
        out = net.run_layers(torch.zeros(1, spec.ch, size, size, device=device))
    maps = head.raw_maps(out) if ours else out
    strides = torch.tensor([size / r.shape[-2] for r in maps])
    rows = records[-1].args[1]
    anchors = torch.tensor(rows).float().view(len(strides), -1, 2)
    # YOLOv5 flips the anchor rows when their sizes run against the strides.
    area = anchors.prod(-1).mean(-1).view(-1)
    da, ds = area[-1] - area[0], strides[-1] - strides[0]
    flipped = bool(da) and bool(da.sign() != ds.sign())
    if flipped:
        anchors = anchors.flip(0)
    anchors = anchors / strides.view(-1, 1, 1)
    if ours:
        with torch.no_grad():
            head.stride.copy_(strides)
            head.anchors.copy_(anchors)
        head.initialize_biases(strides)
    else:
        _set_user_head(head, strides, anchors)
    return tuple(strides.tolist()), anchors, flipped


def _set_user_head(head: nn.Module, strides: torch.Tensor, anchors: torch.Tensor) -> None:
    """What YOLOv5's model init sets on a head: `stride`, and `anchors` in grid units."""
    with torch.no_grad():
        for name, value in (("stride", strides), ("anchors", anchors)):
            current = getattr(head, name, None)
            if isinstance(current, torch.Tensor) and current.shape == value.shape:
                current.copy_(value.to(current.device, current.dtype))
            elif name == "stride":
                head.stride = value.to(next(head.parameters(), value).device)


def _initialize_weights(net: nn.Module) -> None:
    """YOLOv5's BatchNorm eps/momentum and in-place activations (exact types, as there)."""
    for m in net.modules():
        if type(m) is nn.BatchNorm2d:
            m.eps = 1e-3
            m.momentum = 0.03
        elif type(m) in (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU):
            m.inplace = True


def _activation_factory(spec: ModelSpec):
    if spec.activation is None:
        return None
    activation = spec.activation
    try:
        _make_activation(activation)
    except (TypeError, ValueError) as e:
        raise InputRefused(Finding(
            "YD105", "unsafe-expression", Severity.ERROR,
            f"activation `{activation}` cannot be built: {e}", "check its arguments",
            Location(spec.path, spec.key_lines.get("activation")))) from e
    return lambda: _make_activation(activation)


def _make_activation(activation: Activation) -> nn.Module:
    return getattr(nn, activation.name)(*activation.args, **dict(activation.kwargs))


def _instantiate(args: tuple[Any, ...]) -> list[Any]:
    """Activation arguments become a fresh module per copy (no object shared between layers)."""
    return [_make_activation(a) if isinstance(a, Activation) else a for a in args]


def _construct(cls: type, args: tuple[Any, ...], copies: int,
               device: torch.device) -> list[nn.Module]:
    """`copies` instances of cls. A user's block may need real values while it is built (a
    bias prior read with `.item()`): on the meta device it is then built on the CPU and moved,
    so only a constructor that fails on the CPU too is the user's error."""
    try:
        return [cls(*_instantiate(args)) for _ in range(copies)]
    except Exception:
        if device.type != "meta":
            raise
    with torch.device("cpu"):
        return [cls(*_instantiate(args)).to(device) for _ in range(copies)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_jsonable(v) for v in value)
    if isinstance(value, Activation):
        return str(value)
    return value


def forward_failure(spec: ModelSpec, layer: int, error: str, during: str) -> InputRefused:
    """A forward pass that YOLOv5 would also crash in, as a refusal naming the layer."""
    row = spec.layers[layer]
    return InputRefused(Finding(
        "YD202", "build-failed", Severity.ERROR,
        f"{during} fails in layer {layer} {row.module}: {error}",
        "check the `from` indices and widths feeding this layer",
        Location(spec.path, row.line, layer, row.section)))


def _build_failed(spec: ModelSpec, row: LayerSpec, args: tuple[Any, ...], e: Exception,
                  entry: ModuleEntry) -> InputRefused:
    from yolodiag.usermodules import channel_parameters, register_fix, why_raw

    call = f"{row.module}({', '.join(map(repr, _jsonable(args)))})"
    reason = str(e) if isinstance(e, RuleError) else f"{type(e).__name__}: {e}"
    hint = "check this row's arguments against the module's constructor"
    # A channel-aware constructor handed the YAML's raw arguments: the cause is its rule
    # (YD106's), said here, in the one finding of this row.
    if entry.rule == "passthrough" and not isinstance(e, RuleError) and channel_parameters(
            entry.load()) is not None:
        reason += (f" (parse_model passes {row.module} the YAML's arguments unchanged: "
                   f"{why_raw(entry)})")
        hint = register_fix(row.module, entry)
    return InputRefused(Finding(
        "YD202", "build-failed", Severity.ERROR, f"{call} cannot be built: {reason}", hint,
        Location(spec.path, row.line, row.index, row.section), {"exception": type(e).__name__}))
