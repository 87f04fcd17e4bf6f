"""Ultralytics 8.4.190's channel rules: how its parse_model completes a row's arguments, torch-free.

It differs from YOLOv5's in what each set holds (the table), in the width (capped at the scale's
max_channels before the width multiple, and never left alone for the head's output count), in
decisions it takes from the scale letter (C3k2 builds C3k inside at m/l/x, A2C2f gains residual
scaling at l/x) or from earlier rows (the head's class-branch layout), in SPPF's first activation
(set after construction for rows of three arguments or fewer), and in its heads (anchor-free:
`[nc, reg_max, end2end, widths]`). Shared behaviours (Concat, BatchNorm2d, the fallback) are
YOLOv5's rules, reused.
"""

from __future__ import annotations

from yolodiag.build.plan import Completion, Rule, RuleError, RuleInput, make_divisible
from yolodiag.dialects.common import rules as common
from yolodiag.dialects.ultralytics.scaling import DEFAULT_REG_MAX
from yolodiag.dialects.ultralytics.table import NON_LEGACY_HEAD

C3K_SCALES = frozenset("mlx")  # C3k2 rows build C3k blocks inside at these scales
RESIDUAL_SCALES = frozenset("lx")  # A2C2f rows get (residual, mlp_ratio 1.2) at these


def _single_input(r: RuleInput) -> int:
    if not isinstance(r.from_, int):
        raise RuleError(f"takes one input, but `from` is a list {list(r.from_)} "
                        "(Ultralytics indexes its channel list with it: TypeError)")
    return r.ch[r.from_]


def _capped_width(r: RuleInput) -> int:
    if not r.args:
        raise RuleError("needs the output channels as its first argument, got no arguments")
    c2 = r.args[0]
    if isinstance(c2, bool) or not isinstance(c2, (int, float)):
        raise RuleError(f"first argument must be the output channels, got {c2!r}")
    return make_divisible(min(c2, r.max_channels) * r.width_multiple, 8)


def completed(r: RuleInput) -> Completion:
    """base_modules: args become `(c1, min(c2, max_channels) * width, *rest)`, `number`
    copies stacked; SPPF rows of three arguments get their first Conv activated."""
    c1 = _single_input(r)
    c2 = _capped_width(r)
    args = (c1, c2, *r.args[1:])
    keywords = (("cv1_activated", True),) if _is_legacy_sppf(r, args) else ()
    return Completion(args, c2, r.number, keywords)


def _is_legacy_sppf(r: RuleInput, args: tuple) -> bool:
    return r.module == "SPPF" and len(args) <= 3


def completed_repeats(r: RuleInput) -> Completion:
    """base_modules that are also repeat_modules: the repeat count inserted as the third
    argument, one copy built; C3k2 and A2C2f adjusted by the scale letter."""
    done = completed(r)
    args = [*done.args[:2], r.number, *done.args[2:]]
    if r.module == "C3k2" and r.scale in C3K_SCALES:
        args[3:4] = [True]
    if r.module == "A2C2f" and r.scale in RESIDUAL_SCALES:
        args.extend((True, 1.2))
    return Completion(tuple(args), done.c2, 1)


def _input_widths(r: RuleInput) -> list[int]:
    if isinstance(r.from_, int):
        raise RuleError(f"takes a list of inputs, but `from` is the single index {r.from_}")
    return [r.ch[f] for f in r.from_]


def anchor_free_detect(r: RuleInput) -> Completion:
    """Detect: `[nc, reg_max, end2end, input widths]`; its class branch is the legacy layout
    unless a C3k2, A2C2f or C2fCIB row came before. `end2end` is the YAML's key as parse_model
    reads it: None when the YAML has none."""
    options = dict(r.options)
    widths = _input_widths(r)
    if not r.args:
        raise RuleError("needs `[nc]` as its arguments")
    args = (*r.args, options.get("reg_max", DEFAULT_REG_MAX), options.get("end2end"),
            widths)
    legacy = not (NON_LEGACY_HEAD & set(r.earlier))
    return Completion(args, r.previous_c2, r.number, (("legacy", legacy),))


def v10_detect(r: RuleInput) -> Completion:
    """v10Detect: the input widths appended to `[nc]`."""
    widths = _input_widths(r)
    return Completion((*r.args, widths), r.previous_c2, r.number)


def cblinear(r: RuleInput) -> Completion:
    """CBLinear: `(c1, c2, *rest)` with c2 as written (not scaled)."""
    c1 = _single_input(r)
    if not r.args or not isinstance(r.args[0], (int, list, tuple)):
        raise RuleError("needs its output channels (a list of widths) as its first argument")
    return Completion((c1, *r.args), r.args[0], r.number)


def cbfuse(r: RuleInput) -> Completion:
    """CBFuse: raw args; its width is that of the last layer it reads."""
    return Completion(r.args, _input_widths(r)[-1], r.number)


def head_outputs(spec, nc: int) -> int:
    """A head level's channels: nc class scores and 4 * reg_max box bins."""
    return nc + 4 * spec.option("reg_max", DEFAULT_REG_MAX)


# The rules a user declares for a --modules block (or that its signature implies) carry the
# shared names; on Ultralytics each is what its parse_model does for a block placed in that set
# or given that branch. A block declared "channels" joins base_modules, so its width is capped
# and scaled as a stock one's; "detect" has no counterpart: Ultralytics heads take other
# arguments (`[nc, reg_max, end2end, widths]` and a layout flag).
USER_RULES: dict[str, Rule] = {
    "channels": completed,
    "channels+repeats": completed_repeats,
    "out=args0": common.out_args0,
    "input": common.input_width,
    "concat-max": common.concat_max,
}

RULES: dict[str, Rule] = {
    "completed": completed,
    "completed+repeats": completed_repeats,
    "passthrough": common.passthrough,
    "batchnorm": common.batchnorm,
    "concat-sum": common.concat_sum,
    "anchor-free-detect": anchor_free_detect,
    "v10detect": v10_detect,
    "cblinear": cblinear,
    "cbfuse": cbfuse,
    **USER_RULES,
}
