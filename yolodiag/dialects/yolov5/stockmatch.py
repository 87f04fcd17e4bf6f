"""Whether a --modules class named like an entry of YOLOv5's module table is that entry's class:
the family-neutral comparison (`dialects/common/stockmatch.py`, which explains it) on the
representative arguments of YOLOv5's rules and of its blocks that need their own.
"""

from __future__ import annotations

from yolodiag.dialects.common.stockmatch import ANCHORS, RULE_PROBES, Probes, maps
from yolodiag.dialects.common.stockmatch import differences as _differences

_BY_RULE: dict[str, Probes] = {
    **RULE_PROBES,
    "segment": [((2, ANCHORS, 4, 16, (8, 16)), maps((2, 8, 8, 8), (2, 16, 4, 4)))],
}
_BY_NAME: dict[str, Probes] = {
    "TransformerLayer": [((16, 2), maps((4, 2, 16)))],
    "TransformerBlock": [((8, 16, 2, 1), maps((2, 8, 4, 4)))],
    "Proto": [((8, 16, 4), maps((2, 8, 4, 4)))],
}


def probes(name: str, rule: str) -> Probes:
    """The representative (arguments, input) pairs for a table entry; [] when it has none."""
    return _BY_NAME.get(name) or _BY_RULE.get(rule, [])


def differences(theirs: type, ours: type, name: str, rule: str) -> str | None:
    """What differs between the user's class and the table's, in words; None when both build
    the same weights and compute the same output on every probe."""
    return _differences(theirs, ours, name, probes(name, rule))
