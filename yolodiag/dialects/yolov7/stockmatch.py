"""Whether a --modules class named like an entry of YOLOv7's module table is that entry's class:
the family-neutral comparison (`dialects/common/stockmatch.py`, which explains it) on the
representative arguments of YOLOv7's rules, its two own ones (Shortcut, ReOrg) included.
"""

from __future__ import annotations

from yolodiag.dialects.common.stockmatch import RULE_PROBES, Probes, maps
from yolodiag.dialects.common.stockmatch import differences as _differences

_BY_RULE: dict[str, Probes] = {
    **RULE_PROBES,
    "shortcut": [((0,), maps((2, 8, 4, 4), (2, 8, 4, 4)))],
    "reorg": [((), maps((2, 8, 8, 8)))],
}


def probes(rule: str) -> Probes:
    """The representative (arguments, input) pairs for a rule; [] when it has none."""
    return _BY_RULE.get(rule, [])


def differences(theirs: type, ours: type, name: str, rule: str) -> str | None:
    """What differs between the user's class and the table's, in words; None when both build
    the same weights and compute the same output on every probe."""
    return _differences(theirs, ours, name, probes(rule))
