"""Whether a --modules class named like an entry of a dialect's module table is that entry's class.

A user's `models/common.py` holds the stock classes of their family next to their own. A class
there named like a stock one is the stock one when it behaves like it, judged by behaviour and
nothing of the family's source: both are built with the same representative arguments (the
dialect's probes), their state_dicts compared key by key (names and shapes), the reference
weights loaded into the user's, and one train-mode forward of the same seeded input compared.
`differences` says what differs, in words, or None when nothing does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (constructor arguments, a maker of a fresh input) pairs a class is tried on.
Probes = list[tuple[tuple, Callable[[], Any]]]


def maps(*shapes: tuple[int, ...]) -> Callable[[], Any]:
    """A fresh seeded input per forward (heads rewrite their input list in place)."""
    def make():
        import torch

        generator = torch.Generator().manual_seed(0)
        tensors = [torch.randn(shape, generator=generator) for shape in shapes]
        return tensors if len(tensors) > 1 else tensors[0]
    return make


ANCHORS = ([10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119])

# Per shared rule: the constructor calls tried, each with its input. Two widths per block, so
# that a difference between the input and the output width's use shows.
RULE_PROBES: dict[str, Probes] = {
    "channels": [((16, 16), maps((2, 16, 8, 8))), ((8, 16), maps((2, 8, 8, 8)))],
    "channels+repeats": [((16, 16, 1), maps((2, 16, 8, 8))), ((8, 16, 2), maps((2, 8, 8, 8)))],
    "concat-sum": [((1,), maps((2, 8, 4, 4), (2, 16, 4, 4)))],
    "contract": [((2,), maps((2, 8, 8, 8)))],
    "expand": [((2,), maps((2, 16, 8, 8)))],
    "detect": [((2, ANCHORS, (8, 16)), maps((2, 8, 8, 8), (2, 16, 4, 4)))],
}


def differences(theirs: type, ours: type, name: str, calls: Probes) -> str | None:
    """What differs between the user's class and the table's, in words; None when both build
    the same weights and compute the same output on every probe of `calls`."""
    import torch

    if not calls:
        return None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors of a few hundred values: threads only cost time
    try:
        with torch.random.fork_rng(devices=[]), torch.device("cpu"):
            for args, make_input in calls:
                difference = _compare(theirs, ours, name, args, make_input)
                if difference:
                    return difference
    finally:
        torch.set_num_threads(threads)
    return None


def _compare(theirs: type, ours: type, name: str, args: tuple,
             make_input: Callable[[], Any]) -> str | None:
    import torch

    call = f"{name}({', '.join(map(repr, args))})"
    reference, error = _built(ours, args)
    mine, my_error = _built(theirs, args)
    if error or my_error:
        if type(error) is type(my_error):
            return None  # both refuse these arguments alike
        return (f"{call} raises {type(my_error).__name__}: {my_error}" if my_error else
                f"{call} builds, where the stock one raises {type(error).__name__}")
    state, my_state = reference.state_dict(), mine.state_dict()
    shape_difference = _state_difference(my_state, state, call)
    if shape_difference:
        return shape_difference
    try:
        mine.load_state_dict(state)
    except Exception as e:  # the user's own state-dict hooks
        return f"{call} does not load the stock one's weights: {type(e).__name__}: {e}"
    outputs = []
    for module in (reference, mine):
        module.train()
        torch.manual_seed(0)
        try:
            with torch.no_grad():
                outputs.append(module(make_input()))
        except Exception as e:  # the user's forward: whatever it raises is the difference
            outputs.append(e)
    return _output_difference(outputs[1], outputs[0], call)


def _built(cls: type, args: tuple):
    import torch

    torch.manual_seed(0)
    try:
        return cls(*args), None
    except Exception as e:  # the user's constructor, on the arguments the stock one takes
        return None, e


def _state_difference(mine: dict, reference: dict, call: str) -> str | None:
    extra = [k for k in mine if k not in reference]
    missing = [k for k in reference if k not in mine]
    if extra or missing:
        parts = ([f"has {_listed(extra, mine)} that the stock one lacks"] if extra else []) + (
            [f"lacks {_listed(missing, reference)}"] if missing else [])
        return f"{call} {' and '.join(parts)}"
    for key, value in reference.items():
        if tuple(mine[key].shape) != tuple(value.shape):
            return (f"{call} has {key} of shape {list(mine[key].shape)}, the stock one "
                    f"{list(value.shape)}")
    return None


def _listed(keys: list[str], state: dict) -> str:
    shown = ", ".join(f"{k} {list(state[k].shape)}" for k in keys[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _output_difference(mine: Any, reference: Any, call: str) -> str | None:
    if isinstance(mine, Exception) or isinstance(reference, Exception):
        if type(mine) is type(reference):
            return None
        return (f"the forward of {call} raises {type(mine).__name__}: {mine}"
                if isinstance(mine, Exception) else
                f"the forward of {call} works, where the stock one raises "
                f"{type(reference).__name__}")
    flat, flat_reference = _tensors(mine), _tensors(reference)
    shapes = [list(t.shape) for t in flat]
    reference_shapes = [list(t.shape) for t in flat_reference]
    if shapes != reference_shapes:
        return f"{call} outputs {_shapes(shapes)}, the stock one {_shapes(reference_shapes)}"
    gap = max((float((a.float() - b.float()).abs().max()) for a, b in zip(flat, flat_reference)
               if a.numel()), default=0.0)
    if gap > 1e-4:
        return (f"with the same weights, {call} computes other values (largest difference "
                f"{gap:.3g})")
    return None


def _tensors(value: Any) -> list:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):  # an anchor-free head's train-mode output, by name
        return [t for key in sorted(value) for t in _tensors(value[key])]
    return []


def _shapes(shapes: list[list[int]]) -> str:
    return " and ".join("x".join(map(str, s)) for s in shapes) if shapes else "no tensor"
