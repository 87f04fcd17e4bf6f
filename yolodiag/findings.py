"""Findings: the small immutable values every stage of yolodiag produces.

A finding states one fact about the user's model (code, numbers, where it is) and one thing to
do about it. This module holds the value types and the error that carries a finding out of a
stage that cannot go on (a YAML we refuse to read, a layer that cannot be built). It must not
format reports or import torch: renderers and checks build on it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Location:
    """Where a finding points: the YAML file, its line, the layer index and section."""

    file: str | None = None
    line: int | None = None
    layer: int | None = None
    section: str | None = None
    column: int | None = None

    def prefix(self) -> str:
        """`file:line: layer 5 (backbone)`: the head of a one-line error message."""
        parts = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.layer is not None:
            where = f"layer {self.layer}"
            if self.section:
                where += f" ({self.section})"
            parts.append(where)
        elif self.section:
            parts.append(self.section)
        return ": ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "layer": self.layer, "section": self.section}


@dataclass(frozen=True)
class Finding:
    code: str
    name: str
    severity: Severity
    message: str
    hint: str = ""
    location: Location = field(default_factory=Location)
    data: dict[str, Any] = field(default_factory=dict)

    def one_line(self) -> str:
        """The finding as one line for stderr: location, code, message, hint."""
        head = self.location.prefix()
        text = f"{self.code} {self.name}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return f"{head}: {text}" if head else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "severity": self.severity.value,
            "message": self.message,
            "hint": self.hint,
            "location": self.location.as_dict(),
            "data": self.data,
        }


class InputRefused(Exception):
    """A stage cannot go on because of the user's input; carries the finding that says why.

    The CLI turns it into one line on stderr and exit code 2.
    """

    def __init__(self, finding: Finding):
        super().__init__(finding.one_line())
        self.finding = finding
