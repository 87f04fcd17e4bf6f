"""Findings: the small immutable values every stage of yolodiag produces, and the registry of
the checks that produce them.

A finding states one fact about the user's model (code, numbers, where it is) and one thing to
do about it. This module holds the value types, the error that carries a code out of a stage
that cannot go on (a YAML we refuse to read, a layer that cannot be built), and the registry:
every code with its name, default severity, stage and documentation, whether a check function
or a stage produces it. `explain`, `rules`, the runner and the tests all read the registry. It
must not format reports or import torch: renderers and checks build on it.
"""

from __future__ import annotations

import enum
import inspect
import re
from collections.abc import Callable, Iterable
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
class Edit:
    """One change to a model YAML, by what it means (the text editor, `yolodiag.fix`, finds
    the characters): `kind` "from" (row `target`'s `from` entry pointing at absolute layer
    value[0] made to point at value[1], in the entry's own style), "field" (row `target`'s field
    value[0], one of from/number/module/args, set to value[1]), "arg" (row `target`'s argument
    at position value[0] set to value[1]), "split" (row `target` replaced
    by the rows in `value`; references to it go to the last), "key" (top-level key `target`
    set to `value`)."""

    kind: str
    target: int | str
    value: Any

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "value": written(self.value)}


@dataclass(frozen=True)
class Fix:
    """The edits that resolve one finding, and what they do in words; `applicability` "safe"
    (the design as meant) or "unsafe" (it changes the architecture's meaning: applied only
    with `fix --unsafe`)."""

    title: str
    edits: tuple[Edit, ...]
    applicability: str = "safe"

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "applicability": self.applicability,
                "edits": [e.as_dict() for e in self.edits]}


def written(value: Any) -> Any:
    """A value as a YAML (or JSON) writes it: lists for tuples, words for symbols and
    activations (their str), plain scalars as they are."""
    if isinstance(value, (list, tuple)):
        return [written(v) for v in value]
    return value if value is None or isinstance(value, (int, float, str, bool)) else str(value)


@dataclass(frozen=True)
class Finding:
    code: str
    name: str
    severity: Severity
    message: str
    hint: str = ""
    location: Location = field(default_factory=Location)
    data: dict[str, Any] = field(default_factory=dict)
    fix: Fix | None = None

    def one_line(self) -> str:
        """The finding as one line for stderr: location, code, message, hint."""
        head = self.location.prefix()
        text = f"{self.code} {self.name}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        text = f"{head}: {text}" if head else text
        return text.replace("\r", "\\r").replace("\n", "\\n")  # YAML values may hold breaks

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "severity": self.severity.value,
            "message": self.message,
            "hint": self.hint,
            "location": self.location.as_dict(),
            "data": self.data,
            "fix": self.fix.as_dict() if self.fix else None,
        }


class Refused(Exception):
    """A stage cannot go on because of the user's input: the code that says why, and its facts.

    The finding is made by the code's registered CheckInfo, as every finding is; a code
    registered with `refuses=True` makes the command exit 2 (one line on stderr).
    """

    def __init__(self, code: str, message: str, hint: str = "",
                 location: Location | None = None, data: dict[str, Any] | None = None):
        self.finding = registered(code).finding(Problem(message, hint, location or Location(),
                                                        data or {}))
        super().__init__(self.finding.one_line())


class Unsupported(Exception):
    """Input yolodiag cannot work with, outside any YAML or checkpoint finding (a Segment head
    in gradflow, CUDA on a machine without it, a folder that is not a training run): one line
    on stderr, exit code 2, like refused input."""


class Stage(str, enum.Enum):
    """What must have run before a check can: its input."""

    SPEC = "spec"  # the YAML read into a ModelSpec
    BUILD = "build"  # the model built (on the meta device)
    TRACE = "trace"  # forwards traced at the image sizes
    GRAD = "grad"  # one real forward and backward of the loss (gradflow)
    FIT = "fit"  # one batch trained to memorise (overfit)
    CKPT = "ckpt"  # a checkpoint read and train.py's transfer simulated
    RUN = "run"  # a finished YOLOv5 training run read
    DATA = "data"  # a data.yaml and its labels read (--data)


# The stages whose checks each command runs (the CI formats list these as the checks run).
COMMAND_STAGES: dict[str, frozenset[Stage]] = {
    # CKPT: --weights; DATA: --data (checks of a stage run only when it produced its input).
    "check": frozenset({Stage.SPEC, Stage.BUILD, Stage.TRACE, Stage.CKPT, Stage.DATA}),
    "weights": frozenset({Stage.CKPT}),
    "run": frozenset({Stage.CKPT, Stage.RUN}),
    "gradflow": frozenset({Stage.GRAD, Stage.DATA}),
    # overfit also runs check's: a structural finding often says why a model cannot fit.
    "overfit": frozenset({Stage.SPEC, Stage.BUILD, Stage.TRACE, Stage.FIT, Stage.DATA}),
}


@dataclass(frozen=True)
class Problem:
    """What a check yields: the facts of one finding. The runner stamps the check's code, name
    and (unless the problem overrides it) default severity, so a check never repeats them."""

    message: str
    hint: str = ""
    location: Location = field(default_factory=Location)
    data: dict[str, Any] = field(default_factory=dict)
    severity: Severity | None = None
    fix: Fix | None = None  # the edits that resolve it, where they are mechanical and certain


DOC_SECTIONS = ("What it detects", "Why it zeroes P and R", "Why it is an error",
                "Why it is a warning", "Example", "Fix")
# An error fails CI by default, so an error's documentation must name the measured consequence
# that earns it (a forward that fails, a target no anchor takes, a run that stopped); a warning
# may say why it is not an error.
SEVERITY_SECTIONS = {Severity.ERROR: "Why it is an error"}


def required_sections(severity: Severity) -> tuple[str, ...]:
    """The documentation sections a code of this default severity must have."""
    optional = {"Why it is an error", "Why it is a warning"} - {SEVERITY_SECTIONS.get(severity)}
    return tuple(title for title in DOC_SECTIONS if title not in optional)


@dataclass(frozen=True)
class CheckInfo:
    """One code: its name, default severity, stage, documentation and check function.

    `run` is None for codes a stage produces itself (the spec reader's refusals). `on_request`
    checks run only when `--select` names them. `needs`: what the dialect must be able to do
    for the check to mean anything (e.g. "anchors"); for a dialect without it the check is
    skipped, not failed.
    """

    code: str
    name: str
    severity: Severity
    stage: Stage
    doc: str
    run: Callable[[Any], Iterable[Problem]] | None = None
    on_request: bool = False
    needs: frozenset[str] = frozenset()
    refuses: bool = False  # a stage stops with it and the command exits 2 (bad input)
    # What `yolodiag fix` can do about it: "safe", "unsafe" (with --unsafe: it changes the
    # architecture's meaning) or "manual" (the findings carry no edits).
    fixable: str = "manual"

    def finding(self, problem: Problem) -> Finding:
        return Finding(self.code, self.name, problem.severity or self.severity, problem.message,
                       problem.hint, problem.location, problem.data, problem.fix)

    @property
    def summary(self) -> str:
        """The first sentence of "What it detects", on one line (an "e.g." does not end it)."""
        flat = " ".join(self.section("What it detects").split())
        end = re.search(r"(?<!e\.g)(?<!i\.e)\. ", flat)
        return flat[: end.start() + 1] if end else flat

    def section(self, title: str) -> str:
        """One section of the documentation, e.g. "Fix"."""
        parts = re.split(rf"^({'|'.join(map(re.escape, DOC_SECTIONS))}):?\n", self.doc,
                         flags=re.MULTILINE)
        sections = dict(zip(parts[1::2], parts[2::2]))
        return inspect.cleandoc(sections.get(title, ""))


REGISTRY: dict[str, CheckInfo] = {}


def _register(info: CheckInfo) -> None:
    if info.code in REGISTRY:
        raise ValueError(f"{info.code} is registered twice")
    missing = [title for title in required_sections(info.severity)
               if f"{title}:" not in info.doc]
    if missing:
        raise ValueError(f"{info.code}: documentation lacks {', '.join(missing)}")
    REGISTRY[info.code] = info


def check(code: str, name: str, severity: Severity, stage: Stage, *,
          on_request: bool = False, needs: Iterable[str] = (), fixable: str = "manual"
          ) -> Callable:
    """Register a check: a generator of Problems whose docstring is its documentation.
    `fixable`: whether its problems carry a Fix, and of which kind ("safe", "unsafe")."""

    def register(run: Callable[[Any], Iterable[Problem]]) -> Callable[[Any], Iterable[Problem]]:
        _register(CheckInfo(code, name, severity, stage, inspect.cleandoc(run.__doc__ or ""),
                            run, on_request, frozenset(needs), fixable=fixable))
        return run

    return register


def describe(code: str, name: str, severity: Severity, stage: Stage, doc: str, *,
             refuses: bool = False) -> None:
    """Register a code that a stage produces itself (no check function), for explain/rules;
    `refuses`: a stage raises it as Refused, and the command exits 2."""
    _register(CheckInfo(code, name, severity, stage, inspect.cleandoc(doc), refuses=refuses))


def registered(code: str) -> CheckInfo:
    """The CheckInfo of a code (the checks register theirs when yolodiag.checks is imported)."""
    if code not in REGISTRY:
        import yolodiag.checks  # noqa: F401  (registers every code)
    return REGISTRY[code]


def refusing_codes() -> frozenset[str]:
    """The codes whose finding means bad input (exit code 2)."""
    registered(INTERNAL_ERROR)
    return frozenset(code for code, info in REGISTRY.items() if info.refuses)


# A check that raised: a bug in yolodiag, reported as a finding that names the check.
INTERNAL_ERROR = "YD001"
