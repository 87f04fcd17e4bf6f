"""ModelSpec -> BuiltModel: the network a YOLO family's parser builds from a YAML, and a record
per layer. Shared by every dialect.

The rows are completed by the dialect's channel rules (`build.plan`), each row's class is
instantiated (repeats as `nn.Sequential`, or inside the module where the rule passes the count),
the layers are routed by their `from` indices, and the dialect finishes the model as its own
model class does: head strides measured by its probe forward, anchors, bias priors, BatchNorm
settings. State-dict keys and shapes equal the real code's. It never prints, and it leaves no
global state behind (the YAML's activation is scoped to one build).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from yolodiag.build.plan import ModuleEntry, RuleError, plan
from yolodiag.dialects import dialect_of
from yolodiag.findings import Location, Refused
from yolodiag.spec import Activation, LayerSpec, ModelSpec, absolute_source

if TYPE_CHECKING:
    from yolodiag.dialects import Dialect


@dataclass(frozen=True)
class LayerRecord:
    """What was built for one YAML row, in the terms of the family's model summary."""

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
    """The built network: `self.model` holds the layers (the YOLO families' attribute name, so
    state-dict keys read `model.0.conv.weight`), routed by each layer's `from` as they route them.

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
    def head(self) -> nn.Module | None:
        """The dialect's own head class in the last layer (it decodes and assembles the output);
        None for a user's head or a model without one."""
        last = self.model[-1]
        return last if hasattr(last, "assemble") and hasattr(last, "raw_maps") else None

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
            if f != -1:  # -1 is the running value x, as in every YOLO family
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
    # With build(strict=False): the real code's stride probe crashed here (layer, "Error:
    # message"), so it could not build this model; strides and anchors are then unknown (None).
    probe_failure: tuple[int, str] | None = None
    anchors_flipped: bool = False  # the real code reversed the YAML's anchor rows (strides)

    @property
    def dialect(self) -> Dialect:
        return dialect_of(self.spec)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def pixel_anchors(self) -> list[list[tuple[float, float]]] | None:
        """The anchors in pixels, per level: `anchors` times the level's stride (None for an
        anchor-free head)."""
        if self.anchors is None:
            return None
        return [[(float(w) * s, float(h) * s) for w, h in level.tolist()]
                for level, s in zip(self.anchors, self.stride)]

    @property
    def object_sizes(self) -> list[list[tuple[float, float]]] | None:
        """Per level, the object sizes (pixels) its head takes first: the anchors, or for an
        anchor-free head the boxes its fresh head predicts (the dialect's
        `model.level_object_sizes`); None when neither is known."""
        if self.anchors is not None:
            return self.pixel_anchors
        sizes = getattr(self.dialect.model, "level_object_sizes", None)
        return sizes(self) if sizes is not None and self.stride is not None else None

    @property
    def head_index(self) -> int | None:
        """The detection head's layer: the dialect's head, or a user's head with a head rule."""
        heads = self.dialect.head_rules
        return len(self.layers) - 1 if self.layers and self.layers[-1].rule in heads else None


def build(spec: ModelSpec, *, nc: int | None = None, device: str | torch.device = "cpu",
          modules: dict[str, ModuleEntry] | None = None, strict: bool = True) -> BuiltModel:
    """Build `spec` as its dialect's code would. `nc` overrides the YAML's (`Model(cfg, nc=...)`).

    `device="meta"` builds shapes only: no weight memory, strides still measured.
    Raises Refused (YD202 build-failed) naming the layer when a row cannot be built, or
    when the real stride probe would crash; with `strict=False` a crashing probe is recorded in
    `probe_failure` instead, so that the checks can say why it crashed.
    """
    device = torch.device(device)
    dialect = dialect_of(spec)
    model = dialect.model
    nc = nc or spec.nc
    layers: list[nn.Module] = []
    records: list[LayerRecord] = []
    with model.activation_scope(_activation_factory(spec)), device:
        for planned in plan(spec, dialect, modules, nc):
            row, done = planned.row, planned.done
            try:
                if done is None:
                    raise planned.error
                cls = planned.entry.load()
                copies = _construct(cls, done.args, done.copies, device, dict(done.keywords))
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
        stride, grid_anchors, flipped = model.measure_head(net, spec, records, device)
    except Exception as e:  # the real build runs the same forward and anchor arithmetic
        if not isinstance(e, LayerFailed):  # e.g. anchors that cannot be divided by the strides
            e = LayerFailed(len(records) - 1, e)
        size = model.PROBE_SIZE
        during = f"{dialect.possessive} stride probe (a {size}x{size} forward)"
        error = f"{type(e.error).__name__}: {e.error}"
        if strict:
            raise forward_failure(spec, e.index, error, during) from e
        stride, grid_anchors, probe_failure = None, None, (e.index, error)
    model.initialize_weights(net)
    return BuiltModel(spec, net, tuple(records), nc, stride, grid_anchors, device, probe_failure,
                      flipped)


def _activation_factory(spec: ModelSpec):
    if spec.activation is None:
        return None
    activation = spec.activation
    try:
        _make_activation(activation)
    except (TypeError, ValueError) as e:
        raise Refused("YD105", f"activation `{activation}` cannot be built: {e}",
                      "check its arguments",
                      Location(spec.path, spec.key_lines.get("activation"))) from e
    return lambda: _make_activation(activation)


def _make_activation(activation: Activation) -> nn.Module:
    return getattr(nn, activation.name)(*activation.args, **dict(activation.kwargs))


def _instantiate(args: tuple[Any, ...]) -> list[Any]:
    """Activation arguments become a fresh module per copy (no object shared between layers)."""
    return [_make_activation(a) if isinstance(a, Activation) else a for a in args]


def _construct(cls: type, args: tuple[Any, ...], copies: int, device: torch.device,
               keywords: dict[str, Any]) -> list[nn.Module]:
    """`copies` instances of cls. A user's block may need real values while it is built (a
    bias prior read with `.item()`): on the meta device it is then built on the CPU and moved,
    so only a constructor that fails on the CPU too is the user's error."""
    try:
        return [cls(*_instantiate(args), **keywords) for _ in range(copies)]
    except Exception:
        if device.type != "meta":
            raise
    with torch.device("cpu"):
        return [cls(*_instantiate(args), **keywords).to(device) for _ in range(copies)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_jsonable(v) for v in value)
    if isinstance(value, Activation):
        return str(value)
    return value


def forward_failure(spec: ModelSpec, layer: int, error: str, during: str) -> Refused:
    """A forward pass that the real code would also crash in, as a refusal naming the layer."""
    row = spec.layers[layer]
    return Refused("YD202", f"{during} fails in layer {layer} {row.module}: {error}",
                   "check the `from` indices and widths feeding this layer",
                   Location(spec.path, row.line, layer, row.section))


def _build_failed(spec: ModelSpec, row: LayerSpec, args: tuple[Any, ...], e: Exception,
                  entry: ModuleEntry) -> Refused:
    from yolodiag.usermodules import channel_parameters, register_fix, why_raw

    call = f"{row.module}({', '.join(map(repr, _jsonable(args)))})"
    reason = str(e) if isinstance(e, RuleError) else f"{type(e).__name__}: {e}"
    hint = "check this row's arguments against the module's constructor"
    # A channel-aware constructor handed the YAML's raw arguments: the cause is its rule
    # (YD106's), said here, in the one finding of this row.
    if entry.rule == "passthrough" and not isinstance(e, RuleError) and channel_parameters(
            entry.load()) is not None:
        reason += (f" (parse_model passes {row.module} the YAML's arguments unchanged: "
                   f"{why_raw(entry, dialect_of(spec))})")
        hint = register_fix(row.module, dialect_of(spec), entry)
    return Refused("YD202", f"{call} cannot be built: {reason}", hint,
                   Location(spec.path, row.line, row.index, row.section),
                   {"exception": type(e).__name__})
