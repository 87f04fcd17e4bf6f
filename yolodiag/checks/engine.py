"""The check runner and what checks look at.

`Facts` gathers the outputs of the stages that ran for one model (ModelSpec, BuiltModel,
Trace) and the finding of the stage that stopped, if one did. `run_checks` calls every
selected check whose stage produced its input, in code order, and turns an exception inside a
check into an internal-error finding naming the check, so one bug never hides the other
findings. Checks only read Facts; nothing here prints.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from yolodiag.dialects import AUTO, DEFAULT, DIALECTS, dialect_of
from yolodiag.findings import (
    INTERNAL_ERROR,
    REGISTRY,
    CheckInfo,
    Finding,
    Location,
    Problem,
    Severity,
    Stage,
    describe,
)

if TYPE_CHECKING:
    from yolodiag.analyses.anchor_fit import AnchorFit
    from yolodiag.analyses.assignment import TargetAssignment
    from yolodiag.analyses.crashes import Crash
    from yolodiag.build.builder import BuiltModel, LayerRecord
    from yolodiag.build.plan import PlannedRow
    from yolodiag.data import DataInfo
    from yolodiag.dialects import Dialect
    from yolodiag.dialects.common.checkpoint import CheckpointInfo
    from yolodiag.dialects.common.runs import RunInfo
    from yolodiag.dialects.common.transfer import Transfer
    from yolodiag.gradflow import GradFlow
    from yolodiag.overfit import OverfitHistory
    from yolodiag.spec import ModelSpec
    from yolodiag.trace import SizeTrace, Trace

ANCHOR_T = 4.0  # YOLOv5's hyp.scratch anchor_t: a target matches anchors within 4x per side


@dataclass
class Facts:
    """Everything the checks may read about one model."""

    path: str
    spec: ModelSpec | None = None
    built: BuiltModel | None = None
    trace: Trace | None = None
    stopped: Finding | None = None  # the stage that could not go on, as its finding
    requested_sizes: tuple[tuple[int, int], ...] = ()  # --img as given; () for the defaults
    anchor_t: float = ANCHOR_T
    modules: dict = field(default_factory=dict)  # extra module-table entries (--modules)
    check_errors: list[Exception] = field(default_factory=list)  # what crashed checks raised
    checked: list[str] = field(default_factory=list)  # codes of the checks that ran
    grads: GradFlow | None = None  # one measured backward (gradflow)
    fit: OverfitHistory | None = None  # one batch trained to memorise (overfit)
    checkpoint: CheckpointInfo | None = None  # --weights, read safely
    transfer: Transfer | None = None  # what train.py would load from it
    run: RunInfo | None = None  # a finished training run
    data: DataInfo | None = None  # --data: the dataset as train.py reads it
    repo: dict | None = None  # --repo: the yolo.py and the interpreter that built the model
    requested_dialect: str = AUTO  # --dialect

    @property
    def dialect(self) -> Dialect:
        """The dialect the YAML was read as (before it was read: the one asked for, or the
        default)."""
        if self.spec is not None:
            return dialect_of(self.spec)
        return DIALECTS[DEFAULT if self.requested_dialect == AUTO else self.requested_dialect]

    @property
    def head_module(self) -> str:
        """The head row's module name as the YAML writes it, for messages (YD301, YD302)."""
        index = self.built.head_index if self.built is not None else None
        if index is not None and self.spec is not None:
            return self.spec.layers[index].module
        return self.dialect.example("head")

    @property
    def title(self) -> str:
        """What messages call the family's code: "YOLOv5's assignment"."""
        return self.dialect.title

    @property
    def possessive(self) -> str:
        """"YOLOv5's", "Ultralytics'"."""
        return self.dialect.possessive

    def has(self, stage: Stage) -> bool:
        return {Stage.SPEC: self.spec, Stage.BUILD: self.built, Stage.TRACE: self.trace,
                Stage.GRAD: self.grads, Stage.FIT: self.fit, Stage.CKPT: self.transfer,
                Stage.RUN: self.run, Stage.DATA: self.data}[stage] is not None

    def where(self, layer: int | None = None) -> Location:
        """Location of a layer's YAML row (or of the file)."""
        if layer is None or self.spec is None:
            return Location(self.path)
        row = self.spec.layers[layer]
        return Location(self.path, row.line, layer, row.section)

    def key_location(self, key: str) -> Location:
        line = self.spec.key_lines.get(key) if self.spec else None
        return Location(self.path, line, section=key)

    @cached_property
    def plan(self) -> list[PlannedRow]:
        """parse_model's completion of every row it reaches (torch-free)."""
        from yolodiag.build.plan import plan

        return plan(self.spec, self.dialect, self.modules)

    def record(self, index: int) -> LayerRecord:
        return self.built.layers[index]

    @cached_property
    def checkpoint_rows(self) -> dict[int, str]:
        """Layer index -> module name in the checkpoint's embedded YAML (empty without one)."""
        if self.checkpoint is None or self.checkpoint.yaml is None:
            return {}
        reader = DIALECTS.get(self.checkpoint.dialect, self.dialect).checkpoint
        embedded = reader.embedded_spec(self.checkpoint, self.modules)
        return {row.index: row.module for row in embedded.layers}

    @cached_property
    def crashes(self) -> list[Crash]:
        """The forward crashes (stride probe and traced sizes), each with its one cause."""
        from yolodiag.analyses.crashes import crashes

        return crashes(self)

    @cached_property
    def assignment(self) -> TargetAssignment | None:
        """YOLOv5's assignment of the synthetic batch (--data: the train labels) at the first
        traced size (None when the anchors are AutoAnchor placeholders or the model could not
        be traced)."""
        from yolodiag.analyses.assignment import target_assignment

        return target_assignment(self)

    @cached_property
    def anchor_fit(self) -> AnchorFit | None:
        """With --data: the anchors' best possible recall on the train labels (YD405)."""
        from yolodiag.analyses.anchor_fit import anchor_fit

        return anchor_fit(self)

    @property
    def first_ok(self) -> SizeTrace | None:
        """The first image size whose forward completed."""
        ok = self.trace.ok_sizes if self.trace else ()
        return ok[0] if ok else None


@dataclass(frozen=True)
class Selection:
    """--select / --ignore: code prefixes. No --select: every check not marked on-request."""

    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    def includes(self, info: CheckInfo) -> bool:
        if self.select:
            chosen = any(info.code.startswith(p) for p in self.select)
        else:
            chosen = not info.on_request
        return chosen and not any(info.code.startswith(p) for p in self.ignore)

    def unknown_prefixes(self) -> list[str]:
        return [p for p in (*self.select, *self.ignore)
                if not any(code.startswith(p) for code in REGISTRY)]


def run_checks(facts: Facts, selection: Selection = Selection(),
               stages: frozenset[Stage] = frozenset(Stage)) -> list[Finding]:
    """The stage's own finding (if it stopped), then every selected check of `stages` that can
    run (a command runs the checks of its own stages: gradflow the grad ones)."""
    findings = [facts.stopped] if facts.stopped else []
    for code in sorted(REGISTRY):
        info = REGISTRY[code]
        if (info.run is None or info.stage not in stages or not selection.includes(info)
                or not facts.has(info.stage) or not facts.dialect.can(info.needs)):
            continue
        facts.checked.append(code)
        try:
            findings.extend(info.finding(problem) for problem in info.run(facts))
        except Exception as e:  # a bug in a check must not hide the other findings
            findings.append(_internal_error(info, e))
            facts.check_errors.append(e)
    return findings


def _internal_error(info: CheckInfo, error: Exception) -> Finding:
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return REGISTRY[INTERNAL_ERROR].finding(Problem(
        f"check {info.code} {info.name} crashed: {type(error).__name__}: {error} "
        f"({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})",
        "this is a bug in yolodiag: report it with the YAML; every other check ran; "
        f"`--ignore {info.code}` meanwhile",
        data={"check": info.code, "exception": type(error).__name__}))


describe(INTERNAL_ERROR, "internal-error", Severity.ERROR, Stage.SPEC, """
    What it detects:
        A check of yolodiag itself raised an exception. The finding names the check, the
        exception and the line that raised it; every other check still ran.
    Why it zeroes P and R:
        It does not by itself: it means one aspect of the model was not judged, so the model
        has not been fully checked. The exit code is 3 (internal error), whatever --fail-on.
    Why it is an error:
        A check that crashed leaves one aspect of the model unjudged: the report cannot vouch
        for the model, so CI must not pass it silently.
    Example:
        Any YAML that exposes a bug in a check.
    Fix:
        Report it with the YAML. Meanwhile `--ignore` the crashing check's code.
    """)
