"""Small readers every YOLOv5-lineage dialect package needs: the module names a YAML's rows use
(for `sniff`) and the public classes and functions of its block modules (for `namespace`)."""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

from yolodiag.build.plan import canonical_name


def row_module_names(data: Any) -> set[str]:
    """The module names of a YAML's `backbone` and `head` rows (data as yaml.safe_load gives
    it; anything malformed is left to the spec reader to refuse)."""
    if not isinstance(data, dict):
        return set()
    rows = [row for key in ("backbone", "head") if isinstance(data.get(key), list)
            for row in data[key]]
    return {canonical_name(row[2]) for row in rows
            if isinstance(row, list) and len(row) == 4 and isinstance(row[2], str)}


def public_definitions(*modules: ModuleType) -> dict[str, Any]:
    """The classes and functions each module defines itself (not what it imports)."""
    return {name: value for module in modules for name, value in vars(module).items()
            if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == module.__name__}
