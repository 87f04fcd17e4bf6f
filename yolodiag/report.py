"""Report: what one yolodiag command found, as plain data ready for any renderer.

A report is the envelope every command shares (`schema`, `command`, `tool_version`, `model`,
`findings`, `summary`, `exit_code`) plus the command's own section. It is built from the
stages' outputs (BuiltModel, Trace, findings) and never formats text: `render.py` does that.
The JSON form is a stable interface (DESIGN.md, `yolodiag/schemas/report.schema.json`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from yolodiag import __version__
from yolodiag.dialects import DEFAULT, DIALECTS, chosen
from yolodiag.findings import INTERNAL_ERROR, Finding, Severity, refusing_codes

if TYPE_CHECKING:  # torch-free at import: the CLI renders without loading torch
    from yolodiag.build.builder import BuiltModel
    from yolodiag.dialects import Dialect
    from yolodiag.trace import Trace

SCHEMA = "yolodiag.report/1"

# Exit codes, documented once: the CLI and the report agree on them.
EXIT_OK = 0  # nothing at or above --fail-on
EXIT_FINDINGS = 1  # findings at or above --fail-on
EXIT_BAD_INPUT = 2  # bad input or usage: one line on stderr naming file, line, layer
EXIT_INTERNAL = 3  # a bug in yolodiag


@dataclass(frozen=True)
class LayerRow:
    """One row of the model table: YOLOv5's summary columns plus shape, stride and cost."""

    index: int
    from_: int | list[int]
    n: int
    module: str
    args: list[Any]
    params: int
    out_shape: Any
    stride: int | None
    gflops: float
    line: int
    section: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "from": self.from_, "n": self.n, "module": self.module,
                "args": self.args, "params": self.params, "out_shape": self.out_shape,
                "stride": self.stride, "gflops": round(self.gflops, 3), "line": self.line,
                "section": self.section}


@dataclass(frozen=True)
class ModelSection:
    path: str
    bundled: bool
    nc: int
    img: tuple[int, int]  # (height, width) of the first traced size
    params: int
    gflops: float
    layers: tuple[LayerRow, ...]
    detect: dict[str, Any] | None
    sizes: tuple[tuple[int, int], ...] = ()
    dialect: dict[str, str] | None = None  # the family it was read as, and why

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "bundled": self.bundled, "nc": self.nc, "img": list(self.img),
                "params": self.params, "gflops": round(self.gflops, 1),
                "layers": [row.as_dict() for row in self.layers], "detect": self.detect,
                "sizes": [list(s) for s in self.sizes], "dialect": self.dialect}


def summarize(findings: list[Finding]) -> dict[str, int]:
    counts = {s.value: 0 for s in Severity}
    for f in findings:
        counts[f.severity.value] += 1
    return counts


def exit_code(findings: list[Finding], fail_on: Severity) -> int:
    """3 if a check crashed, 2 if the input was refused, 1 for findings at or above fail_on."""
    codes = {f.code for f in findings}
    if INTERNAL_ERROR in codes:
        return EXIT_INTERNAL
    if codes & refusing_codes():
        return EXIT_BAD_INPUT
    order = [Severity.ERROR, Severity.WARNING, Severity.INFO]
    failing = order[: order.index(fail_on) + 1]
    return EXIT_FINDINGS if any(f.severity in failing for f in findings) else EXIT_OK


@dataclass
class Report:
    """One command on one model. `path` names the model even when it could not be read."""

    command: str
    model: ModelSection | None = None
    findings: list[Finding] = field(default_factory=list)
    fail_on: Severity = Severity.ERROR
    sections: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    bundled: bool = False
    # The exceptions behind a refusal or a crashed check, for --debug (never serialised).
    errors: list[Exception] = field(default_factory=list)
    checked: tuple[str, ...] | None = None  # codes of the checks that ran (None: unknown)

    @property
    def summary(self) -> dict[str, int]:
        return summarize(self.findings)

    @property
    def dialect(self) -> Dialect:
        """The dialect the YAML was read as, or the default one (text output names its code:
        "YOLOv5's assignment")."""
        read_as = self.sections.get("dialect")
        return DIALECTS.get(read_as["name"] if read_as else DEFAULT, DIALECTS[DEFAULT])

    @property
    def batch_source(self) -> str:
        """What gradflow and overfit ran on: the synthetic images, or --data's train images."""
        data = self.sections.get("data")
        return f"train images of {data['path']}" if data else "synthetic images"

    @property
    def exit_code(self) -> int:
        return exit_code(self.findings, self.fail_on)

    @property
    def internal_errors(self) -> list[Finding]:
        return [f for f in self.findings if f.code == INTERNAL_ERROR]

    @property
    def refused(self) -> Finding | None:
        """The finding the input was refused with (exit code 2), if it was."""
        return next((f for f in self.findings if f.code in refusing_codes()), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "command": self.command,
            "tool_version": __version__,
            "model": self.model.as_dict() if self.model else None,
            **self.sections,
            "findings": [f.as_dict() for f in self.findings],
            "summary": self.summary,
            "exit_code": self.exit_code,
        }


@dataclass
class Run:
    """One command over several models (`yolodiag check models/*.yaml`): one summary and one
    exit code, the worst of the reports' (3 > 2 > 1 > 0)."""

    command: str
    reports: list[Report]

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.reports for f in r.findings]

    @property
    def summary(self) -> dict[str, int]:
        return summarize(self.findings)

    @property
    def exit_code(self) -> int:
        return max((r.exit_code for r in self.reports), default=EXIT_OK)

    def as_dict(self) -> dict[str, Any]:
        """One model: its report as is. Several: the same envelope with `reports`."""
        if len(self.reports) == 1:
            return self.reports[0].as_dict()
        return {"schema": SCHEMA, "command": self.command, "tool_version": __version__,
                "reports": [r.as_dict() for r in self.reports], "summary": self.summary,
                "exit_code": self.exit_code}


def model_section(built: BuiltModel, trace: Trace, *, bundled: bool = False) -> ModelSection:
    """The model table at the first traced size (BuiltModel + Trace -> ModelSection)."""
    first = trace.sizes[0]
    traced = {layer.index: layer for layer in first.layers}
    rows = []
    for record in built.layers:
        layer = traced.get(record.index)
        rows.append(LayerRow(
            index=record.index,
            from_=list(record.from_) if isinstance(record.from_, tuple) else record.from_,
            n=record.number, module=record.module, args=_listify(record.args),
            params=record.params, out_shape=layer.out_shape if layer else None,
            stride=layer.stride if layer else None,
            gflops=layer.gflops if layer else 0.0, line=record.line,
            section=record.section))
    detect = None
    if built.head_index is not None and built.stride is not None:
        # A family's head facts beyond strides and anchors (an anchor-free head's reg_max...).
        head_facts = getattr(built.dialect.model, "head_facts", None)
        detect = {"layer": built.head_index, "strides": [_number(s) for s in built.stride],
                  "anchors_grid": None if built.anchors is None else built.anchors.tolist(),
                  **(head_facts(built) if head_facts else {})}
    dialect = chosen(built.spec).as_dict()
    if built.spec.scale_reason:
        spec = built.spec
        dialect["scale"] = {"letter": spec.scale, "source": spec.scale_source,
                            "depth_multiple": spec.depth_multiple,
                            "width_multiple": spec.width_multiple,
                            "max_channels": _number(spec.max_channels), "built": spec.scale_reason}
    return ModelSection(path=built.spec.path, bundled=bundled, nc=built.nc, img=first.img,
                        params=built.params, gflops=first.gflops, layers=tuple(rows),
                        detect=detect, sizes=tuple(s.img for s in trace.sizes),
                        dialect=dialect)


def finite(value: Any) -> Any:
    """JSON-ready data with every non-finite float (an infinite receptive field) as None, so
    that the JSON is strict (no NaN or Infinity tokens)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _listify(value: Any) -> Any:
    return [_listify(v) for v in value] if isinstance(value, (list, tuple)) else value


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def provenance_sections(facts) -> dict[str, Any]:
    """Whose code decided the model: `dialect` (the family the YAML was read as, and why; None
    when it could not be read), `repo` (--repo: the yolo.py and the interpreter that built it)
    and `modules` (--modules: per block the YAML uses, its class, its rule and how that was
    decided, and the checkouts' yolo.py files whose parse_model was read)."""
    family = {"dialect": chosen(facts.spec).as_dict() if facts.spec is not None else None}
    if facts.repo is not None:
        return {**family, "repo": facts.repo}
    if not facts.modules:
        return family
    from yolodiag.usermodules import registration_file

    used = {row.module for row in facts.spec.layers} if facts.spec else set(facts.modules)
    entries = [entry for name, entry in facts.modules.items() if name in used]
    return {**family, "modules": {
        "registrations": sorted({registration_file(e) for e in facts.modules.values()
                                 if e.registered_by}),
        "blocks": [{"name": e.name, "class": e.factory, "rule": e.rule, "decided": e.decided,
                    "registered_by": registration_file(e) if e.registered_by else None,
                    "differs": e.differs} for e in entries]}}


def transfer_sections(facts) -> dict:
    """The JSON sections of a --weights read: the checkpoint's facts and what train.py transfers."""
    checkpoint = facts.checkpoint
    if checkpoint is None:
        return {"checkpoint": None, "transfer": None}
    return {"checkpoint": {"path": checkpoint.path, "layout": checkpoint.layout,
                           "epoch": checkpoint.epoch, "date": checkpoint.date,
                           "nc": checkpoint.nc, "half": checkpoint.half,
                           "optimizer": checkpoint.has_optimizer, "ema": checkpoint.has_ema,
                           "stride": checkpoint.stride, "tensors": len(checkpoint.state),
                           "nonfinite": checkpoint.nonfinite},
            "transfer": facts.transfer.as_dict() if facts.transfer else None}
