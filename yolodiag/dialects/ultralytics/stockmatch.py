"""Whether a --modules class named like an entry of Ultralytics' module table is that entry's
class: the family-neutral comparison (`dialects/common/stockmatch.py`, which explains it) on
representative arguments of Ultralytics' rules, and of the classes whose constructors take more
than the widths (and the repeat count) or need widths of their own (attention heads 32 or 64
wide, PSA's equal input and output).
"""

from __future__ import annotations

from yolodiag.dialects.common.stockmatch import RULE_PROBES, Probes, maps
from yolodiag.dialects.common.stockmatch import differences as _differences


def _fused_inputs():
    """CBFuse's input: the CBLinear outputs it picks from (one list), then the map it adds to."""
    make = maps((2, 4, 4, 4), (2, 8, 4, 4), (2, 4, 8, 8))

    def fused():
        first, second, target = make()
        return [[first, second], target]
    return fused


_BY_RULE: dict[str, Probes] = {
    "completed": RULE_PROBES["channels"],
    "completed+repeats": RULE_PROBES["channels+repeats"],
    "concat-sum": RULE_PROBES["concat-sum"],
    "anchor-free-detect": [((2, 16, False, (8, 16)), maps((2, 8, 8, 8), (2, 16, 4, 4))),
                           ((3, 1, True, (8, 16)), maps((2, 8, 8, 8), (2, 16, 4, 4)))],
    "v10detect": [((2, (8, 16)), maps((2, 8, 8, 8), (2, 16, 4, 4)))],
    "cblinear": [((8, (4, 8)), maps((2, 8, 8, 8)))],
    "cbfuse": [(([0, 1],), _fused_inputs())],
}
_BY_NAME: dict[str, Probes] = {
    "SCDown": [((16, 16, 3, 2), maps((2, 16, 8, 8))), ((8, 16, 3, 2), maps((2, 8, 8, 8)))],
    "RepNCSPELAN4": [((16, 16, 16, 8, 1), maps((2, 16, 8, 8))),
                     ((8, 16, 8, 4, 2), maps((2, 8, 8, 8)))],
    "ELAN1": [((16, 16, 16, 8), maps((2, 16, 8, 8))), ((8, 16, 8, 4), maps((2, 8, 8, 8)))],
    "SPPELAN": [((16, 16, 8), maps((2, 16, 8, 8))), ((8, 16, 8), maps((2, 8, 8, 8)))],
    "PSA": [((64, 64), maps((2, 64, 4, 4)))],
    "C2PSA": [((64, 64, 1), maps((2, 64, 4, 4)))],
    "C2fPSA": [((64, 64, 1), maps((2, 64, 4, 4)))],
    "A2C2f": [((32, 64, 1), maps((2, 32, 4, 4))), ((64, 64, 2, True, 1, True, 1.2),
                                                   maps((2, 64, 4, 4)))],
}


def probes(rule: str, name: str = "") -> Probes:
    """The representative (arguments, input) pairs for a class of that name and rule; [] when
    there are none (the torch.nn classes, which cannot be redefined under their names)."""
    return _BY_NAME.get(name) or _BY_RULE.get(rule, [])


def differences(theirs: type, ours: type, name: str, rule: str) -> str | None:
    """What differs between the user's class and the table's, in words; None when both build
    the same weights and compute the same output on every probe."""
    return _differences(theirs, ours, name, probes(rule, name))
