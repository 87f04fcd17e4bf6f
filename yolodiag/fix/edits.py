"""Findings' edits applied to a model YAML's rows, by meaning: a `from` entry re-pointed in
its own style (relative stays relative), a field or an argument set, a row split into several
(references to it then reach its last part), a top-level key set. A split shifts every later
row, so each row's `from` is renumbered: an absolute index to the row's new position, a
relative one so that it still reaches the same row. The result goes to `text.edit`, which
writes it into the YAML.
"""

from __future__ import annotations

import copy
from typing import Any

from yolodiag.findings import Edit
from yolodiag.fix.text import SECTIONS, NewRow

FIELDS = ("from", "number", "module", "args")


def apply(data: dict, edits: tuple[Edit, ...]) -> tuple[list[NewRow], dict[str, Any]]:
    """The edited rows (each with the input row it rewrites, or None where inserted) and the
    top-level keys set, from the YAML's `data` as read."""
    old = [(section, copy.deepcopy(row)) for section in SECTIONS
           for row in (data.get(section) or [])]
    sections, values = [section for section, _ in old], [row for _, row in old]
    keys: dict[str, Any] = {}
    splits: dict[int, list[list]] = {}
    for e in edits:
        if e.kind == "from":
            values[e.target][0] = _repointed(values[e.target][0], e.target, *e.value)
        elif e.kind == "field":
            values[e.target][FIELDS.index(e.value[0])] = copy.deepcopy(e.value[1])
        elif e.kind == "arg":
            values[e.target][3][e.value[0]] = copy.deepcopy(e.value[1])
        elif e.kind == "split":
            splits[e.target] = copy.deepcopy(list(e.value))
        elif e.kind == "key":
            keys[e.target] = copy.deepcopy(e.value)
        else:
            raise ValueError(f"unknown edit kind {e.kind!r}")
    rows: list[NewRow] = []
    new_index: dict[int, int] = {}  # input row -> where it (its last part) is now
    for i, section in enumerate(sections):
        parts = splits.get(i, [values[i]])
        rows.append(NewRow(parts[0], i, section))
        rows += [NewRow(part, None, section) for part in parts[1:]]
        new_index[i] = len(rows) - 1
    if splits:
        _renumber(rows, new_index)
    return rows, keys


def _repointed(written: Any, row: int, old: int, new: int) -> Any:
    """`from` as written with its entry that reaches absolute layer `old` made to reach
    `new`, relative where it was relative."""
    def entry(e: int) -> int:
        reached = e if e >= 0 else row + e
        return (new if e >= 0 else new - row) if reached == old else e
    return [entry(e) for e in written] if isinstance(written, list) else entry(written)


def _renumber(rows: list[NewRow], new_index: dict[int, int]) -> None:
    """Every rewritten row's `from` made to reach the same rows at their new positions (an
    inserted part's own `from` is written for where it stands)."""
    for position, row in enumerate(rows):
        if row.origin is None:
            continue

        def entry(e: int, origin: int = row.origin, position: int = position) -> int:
            if e >= 0:
                return new_index.get(e, e)
            # the part first in a split reads what the whole row read
            return new_index.get(origin + e, origin + e) - position
        written = row.value[0]
        row.value[0] = [entry(e) for e in written] if isinstance(written, list) else entry(written)
