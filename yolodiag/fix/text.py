"""Editing a model YAML's text by its nodes: PyYAML's composer gives every node's character
span, so a changed value is written over exactly its own characters, a list compared element
by element so that only what changed is rewritten, and a row inserted after another in the
sequence's own style (flow `[[...], ...]` or block `- [...]`). Values are written flow-style
as YOLO YAMLs write them (plain names, `None` and `nc` as words, quoted strings only where a
plain one would read back differently). Nothing is evaluated; the result is checked by reading
it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

SECTIONS = ("backbone", "head")
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


@dataclass
class NewRow:
    """A row of the edited model: its value, and the row of the input it rewrites in place
    (None: a row inserted after the one before it)."""

    value: list
    origin: int | None
    section: str


def render(value: Any) -> str:
    """A value as flow-style YAML that reads back as the same value."""
    import yaml

    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and yaml.safe_load(text) == text:
        return text
    return "'" + text.replace("'", "''") + "'"


def rows_and_keys(text: str):
    """(the row nodes in model order, as (section, node); the top-level key -> value node)."""
    import yaml

    root = yaml.compose(text)
    keys = {key.value: value for key, value in root.value} if root is not None else {}
    rows = [(section, item) for section in SECTIONS
            if isinstance(keys.get(section), yaml.SequenceNode)
            for item in keys[section].value]
    return rows, keys


def edit(text: str, rows: list[NewRow], keys: dict[str, Any]) -> str:
    """`text` with its rows rewritten as `rows` says and its top-level `keys` set."""
    nodes, key_nodes = rows_and_keys(text)
    spans: list[tuple[int, int, str]] = []
    inserted: dict[int, list[list]] = {}  # input row -> the rows inserted after it, in order
    anchor = None
    for row in rows:
        if row.origin is not None:
            anchor = row.origin
            spans += _replaced(text, nodes[anchor][1], row.value)
        else:
            inserted.setdefault(anchor, []).append(row.value)
    spans += [_inserted_after(text, nodes[origin][1], values)
              for origin, values in inserted.items()]
    for key, value in keys.items():
        spans += _replaced(text, key_nodes[key], value)
    for start, end, new in sorted(spans, key=lambda s: (s[0], s[1]), reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _replaced(text: str, node, value: Any) -> list[tuple[int, int, str]]:
    import yaml

    start, end = node.start_mark.index, node.end_mark.index
    old = yaml.SafeLoader("").construct_object(node, deep=True)
    if old == value and _same_types(old, value):
        return []
    if isinstance(node, yaml.SequenceNode) and isinstance(value, (list, tuple)) \
            and len(node.value) == len(value):
        return [span for item, new in zip(node.value, value)
                for span in _replaced(text, item, new)]
    return [(start, end, render(value))]


def _same_types(old: Any, new: Any) -> bool:
    if isinstance(old, list) and isinstance(new, (list, tuple)):
        return len(old) == len(new) and all(map(_same_types, old, new))
    return type(old) is type(new)


def _inserted_after(text: str, node, values: list[list]) -> tuple[int, int, str]:
    """The insertion of rows after `node`'s row, each on a line of its own in the sequence's
    style where that row ends its line, else on the same line."""
    end = node.end_mark.index
    before = text[:node.start_mark.index].rstrip(" \t")
    line_end = re.match(r"[ \t]*(,?)[ \t]*(#[^\n]*)?(\n|$)", text[end:])
    if before.endswith("-"):  # a block sequence: `- [from, n, module, args]`
        indent = " " * (len(before) - 1 - (before.rfind("\n") + 1))
        at = end + line_end.end() if line_end else end
        return at, at, "".join(f"{indent}- {render(v)}\n" for v in values)
    if line_end is None:  # more of the sequence follows on this line
        return end, end, "".join(", " + render(v) for v in values)
    at = end + line_end.end()
    comma = "" if line_end.group(1) else ","
    newline = "" if line_end.group(3) else "\n"
    indent = " " * node.start_mark.column
    return end, at, (comma + text[end:at] + newline
                     + "".join(f"{indent}{render(v)},\n" for v in values))
