"""Channel rules: how the parse_model of YOLOv5 v7.0 and of YOLOv7 completes a layer's arguments.

Both decide per module class whether a layer gets its input width inserted as `c1` and its
output width scaled by `width_multiple`, whether it receives the repeat count, or whether its
YAML arguments pass through untouched while the parser assumes the output width equals the
input width; the two differ in which classes sit in which set (their tables), and YOLOv7 adds
`Shortcut` and `ReOrg` (`shortcut`, `reorg`). Each rule here is one of those behaviours as a
small pure function; a dialect's table names the rule next to every module, and
`build.plan.plan` walks a whole ModelSpec the way parse_model does. No torch here: rules are
arithmetic on channel counts, so the spec stage and the checks can use them without building
anything.
"""

from __future__ import annotations

from dataclasses import replace

from yolodiag.build.plan import Completion, Rule, RuleError, RuleInput, make_divisible


def _single_input(r: RuleInput) -> int:
    if not isinstance(r.from_, int):
        raise RuleError(f"takes one input, but `from` is a list {list(r.from_)}")
    return r.ch[r.from_]


def _scaled_width(r: RuleInput) -> int:
    if not r.args:
        raise RuleError("needs the output channels as its first argument, got no arguments")
    c2 = r.args[0]
    if isinstance(c2, bool) or not isinstance(c2, (int, float)):
        raise RuleError(f"first argument must be the output channels, got {c2!r}")
    # YOLOv5 leaves a width equal to the Detect output size alone (a conv producing `no` maps).
    return c2 if c2 == r.no else make_divisible(c2 * r.width_multiple, 8)


def channels(r: RuleInput) -> Completion:
    """Channel-aware: args become `(c1, c2 * width_multiple, *rest)`; `number` copies stacked."""
    c1 = _single_input(r)
    c2 = _scaled_width(r)
    return Completion((c1, c2, *r.args[1:]), c2, r.number)


def channels_repeats(r: RuleInput) -> Completion:
    """Channel-aware and takes the repeat count as its third argument (C3, BottleneckCSP...)."""
    done = channels(r)
    args = (*done.args[:2], r.number, *done.args[2:])
    return Completion(args, done.c2, 1)


def passthrough(r: RuleInput) -> Completion:
    """YOLOv5's fallback for any other module: raw args, output width assumed equal to the input."""
    return Completion(r.args, _single_input(r), r.number)


def out_args0(r: RuleInput) -> Completion:
    """Raw args, output width is `args[0]` as written (not width-scaled)."""
    _single_input(r)
    if not r.args or not isinstance(r.args[0], int):
        raise RuleError("needs the output channels as its first argument")
    return Completion(r.args, r.args[0], r.number)


def input_width(r: RuleInput) -> Completion:
    """Width-preserving blocks that need their input width (attention: CBAM(channels, r)):
    args become `(c1, *args)`, output width = input width."""
    c1 = _single_input(r)
    return Completion((c1, *r.args), c1, r.number)


def batchnorm(r: RuleInput) -> Completion:
    """nn.BatchNorm2d: args become `[c1]`; parse_model does not update c2 for it (kept as is)."""
    return Completion((_single_input(r),), r.previous_c2, r.number)


def _input_widths(r: RuleInput) -> list[int]:
    if isinstance(r.from_, int):
        raise RuleError(f"takes a list of inputs, but `from` is the single index {r.from_}")
    return [r.ch[f] for f in r.from_]


def concat_sum(r: RuleInput) -> Completion:
    """Concat: output width is the sum of the input widths."""
    return Completion(r.args, sum(_input_widths(r)), r.number)


def concat_max(r: RuleInput) -> Completion:
    """Weighted-sum style nodes (BiFPN): output width is the widest input."""
    return Completion(r.args, max(_input_widths(r)), r.number)


def detect(r: RuleInput) -> Completion:
    """Detect: the input widths are appended; `anchors: N` becomes N placeholder pairs per level."""
    widths = _input_widths(r)
    args = list(r.args)
    if len(args) < 2:
        raise RuleError("needs `[nc, anchors]` as arguments")
    if isinstance(args[1], int) and not isinstance(args[1], bool):
        args[1] = [list(range(args[1] * 2))] * len(widths)
    args.append(widths)
    return Completion(tuple(args), r.previous_c2, r.number)


def segment(r: RuleInput) -> Completion:
    """Segment: as Detect, and the prototype width `args[3]` is width-scaled."""
    done = detect(r)
    args = list(done.args)
    if len(args) < 5:
        raise RuleError("needs `[nc, anchors, masks, protos]` as arguments")
    args[3] = make_divisible(args[3] * r.width_multiple, 8)
    return replace(done, args=tuple(args))


def shortcut(r: RuleInput) -> Completion:
    """YOLOv7's Shortcut (the sum of two maps): output width is the first input's."""
    return Completion(r.args, _input_widths(r)[0], r.number)


def reorg(r: RuleInput) -> Completion:
    """YOLOv7's ReOrg (space-to-depth by 2, by slicing): width grows 4x."""
    return Completion(r.args, _single_input(r) * 4, r.number)


def contract(r: RuleInput) -> Completion:
    """Space-to-depth by `gain`: width grows by gain**2."""
    gain = r.args[0] if r.args else 2
    return Completion(r.args, _single_input(r) * gain**2, r.number)


def expand(r: RuleInput) -> Completion:
    """Depth-to-space by `gain`: width shrinks by gain**2."""
    gain = r.args[0] if r.args else 2
    return Completion(r.args, _single_input(r) // gain**2, r.number)


# The top-level keys both parse_models read unconditionally.
REQUIRED_KEYS = ("nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head")
# torch.nn activation classes a YAML may name (the `activation:` key, `nn.SiLU()` arguments).
ACTIVATIONS = ("SiLU", "ReLU", "ReLU6", "LeakyReLU", "Hardswish", "Hardsigmoid", "Sigmoid",
               "Tanh", "Mish", "GELU", "ELU", "CELU", "SELU", "PReLU", "Softplus", "Identity")


def head_outputs(spec, nc: int) -> int:
    """A head level's channels (parse_model's `no`): per anchor, (x, y, w, h, objectness) and
    nc class scores."""
    return spec.na * (nc + 5)


RULES: dict[str, Rule] = {
    "channels": channels,
    "channels+repeats": channels_repeats,
    "passthrough": passthrough,
    "out=args0": out_args0,
    "input": input_width,
    "batchnorm": batchnorm,
    "concat-sum": concat_sum,
    "concat-max": concat_max,
    "detect": detect,
    "segment": segment,
    "contract": contract,
    "expand": expand,
    "shortcut": shortcut,
    "reorg": reorg,
}
