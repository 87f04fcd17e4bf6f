"""`--repo DIR`: build the model YAML with the user's own code (their YOLOv5 or YOLOv7 checkout)
and bring its layers back. Family-neutral: each dialect's repo.py says how a checkout of its
family is recognised (`Located`: what to import) and which module table reads the result.

Their code runs in a subprocess (an explicit opt-in: it executes what is in their folder), in the
interpreter they name, and hands back plain data in a JSON file: per layer the class built, the
constructor arguments their `parse_model` passed, copies and parameters; strides, anchors,
state-dict shapes, a shape trace by yolodiag's own tracer, and the constructor signatures of the
YAML's module names, and which interpreter ran it. The worker is repo_worker.py run as a script:
it needs torch, numpy and pyyaml in that interpreter, not an installed yolodiag (our package is
loaded from this folder by path).

Nothing of their code is read or copied: constructor arguments are recorded by wrapping the
classes' `__init__` at run time, failures are located from the traceback's frames.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolodiag.dialects.common.repo_worker import REQUIRED, jsonable_default

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from yolodiag.build.builder import BuiltModel
    from yolodiag.build.plan import ModuleEntry
    from yolodiag.trace import Trace

__all__ = ["REQUIRED", "Located", "RepoBuild", "RepoFailure", "RepoLayer", "as_built",
           "run_worker", "traced"]


@dataclass(frozen=True)
class Located:
    """What the worker imports: `module` with `path` first on sys.path (None: as installed);
    `source` is what reports call it (their yolo.py); `dialect` names the family (the worker
    traces with its settings, and reads the head's anchors only when the family has them)."""

    path: str | None
    module: str
    source: str
    dialect: str


@dataclass(frozen=True)
class RepoLayer:
    """One built layer of their model, as plain data."""

    index: int
    from_: int | tuple[int, ...]
    type: str  # class built (for an nn.Sequential of copies: the class of its first child)
    # Arguments their parse_model passed; nested lists as tuples, an nn.Module as its source text
    # ("nn.SiLU()"). None when the class was not visible to record (outside their yolo module).
    args: tuple | None
    copies: int  # len of the nn.Sequential when parse_model stacked copies, else 1
    params: int


@dataclass(frozen=True)
class RepoFailure:
    layer: int | None  # the YAML row where their code raised, when it can be told
    exception: str  # e.g. "NameError"
    message: str  # str(exception), first line
    during: str  # "import" | "build" | "trace"


@dataclass(frozen=True)
class RepoBuild:
    source: str  # what was imported, e.g. "/path/models/yolo.py"
    layers: tuple[RepoLayer, ...]
    stride: tuple[float, ...] | None
    anchors: list | None  # their head's `anchors` (grid units), nested lists
    state: dict[str, list[int]]  # state_dict key -> shape, in order
    trace: Trace | None
    # Per module name asked for: positional constructor parameters with their defaults
    # (REQUIRED when none); a name that does not resolve in their code is absent.
    signatures: dict[str, list[tuple[str, object]]]
    failure: RepoFailure | None
    # The interpreter that ran their code: {"python": path, "version": ..., "torch": ...}.
    interpreter: dict[str, str | None] = field(default_factory=dict)

    def provenance(self) -> dict[str, str | None]:
        """Which yolo.py built the model, in which interpreter (the report's `repo` section)."""
        return {"yolo_py": self.source, "python": self.interpreter.get("python"),
                "python_version": self.interpreter.get("version"),
                "torch": self.interpreter.get("torch")}


def run_worker(located: Located, yaml_path: str | Path, sizes: list[tuple[int, int]],
               names: list[str], nc: int | None = None, python: str | None = None,
               timeout: float = 600) -> RepoBuild:
    """Build `yaml_path` with the code `located` names, in a subprocess running `python`.

    Their code failing to import, build or run comes back in `failure`; raises Unsupported when
    the subprocess ends without a result (a crash, a timeout).
    """
    from yolodiag.findings import Unsupported

    path_entry, module, source = located.path, located.module, located.source
    with tempfile.TemporaryDirectory(prefix="yolodiag-repo-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request.write_text(json.dumps({
            "path": path_entry, "module": module, "source": source,
            "package": str(Path(__file__).resolve().parents[2]),  # the yolodiag folder
            "yaml": str(Path(yaml_path).resolve()), "sizes": [list(s) for s in sizes],
            "names": list(names), "nc": nc, "dialect": located.dialect}), encoding="utf-8")
        worker = Path(__file__).resolve().parent / "repo_worker.py"
        command = [python or sys.executable, "-W", "ignore", str(worker), "--worker",
                   str(request), str(result)]
        try:
            # Their code prints tables: keep it off our output, read only the result file.
            done = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL,
                                  timeout=timeout, env={**os.environ, "YOLO_OFFLINE": "1"})
        except subprocess.TimeoutExpired as e:
            raise Unsupported(f"--repo: building with {source} took over {timeout:g} s"
                              f"{_last_line(e.stderr)}") from None
        except OSError as e:
            raise Unsupported(f"--repo: cannot run {command[0]}: {e}") from None
        if not result.is_file():
            raise Unsupported(f"--repo: building with {source} ended (exit {done.returncode}) "
                              f"without a result{_last_line(done.stderr)}")
        return _from_json(json.loads(result.read_text(encoding="utf-8")))


def traced(path: Path, requested: tuple, repo: str | Path,
           build: Callable[[list[str]], RepoBuild], modules: Mapping[str, ModuleEntry],
           title: str, dialect: str = "auto", rule_names: Mapping[str, str] | None = None):
    """(Facts, refusal or None) as commands._traced gives them, with the model built and traced
    by the user's code: the spec is read (and refused) by us first, so that no string their
    parse_model would eval reaches it. `requested`: the --img sizes as given; `build(names)` runs
    the worker on the YAML's module names (sorted); `modules` is the family's table and `title`
    its name ("YOLOv5") in messages; `dialect` is what --dialect asked for; `rule_names` the
    family's names for the rules read off their build (see as_built), where they differ."""
    from yolodiag.checks import Facts
    from yolodiag.findings import Location, Refused, Unsupported
    from yolodiag.spec import load_spec, module_names

    facts = Facts(str(path), requested_sizes=requested)
    try:
        names = module_names(path)
        facts.spec = load_spec(path, extra_modules=names, dialect=dialect)
    except Refused as e:
        facts.stopped = e.finding
        return facts, e
    result = build(sorted(names))
    failure, facts.repo = result.failure, result.provenance()
    if failure is not None and failure.during == "import":
        raise Unsupported(f"--repo {repo}: importing {result.source} in {facts.repo['python']} "
                          f"raised {failure.exception}: {failure.message} (run it with an "
                          "interpreter that has its requirements: --repo-python)")
    if failure is not None:
        location = (facts.where(failure.layer) if failure.layer is not None
                    and failure.layer < len(facts.spec.layers) else Location(str(path)))
        where = (f" in layer {failure.layer} {facts.spec.layers[failure.layer].module}"
                 if location.layer is not None else "")
        refusal = Refused(
            "YD202", f"your {title} ({result.source}) fails to {failure.during} the model"
            f"{where}: {failure.exception}: {failure.message}",
            "check this row against your module's constructor and parse_model's branch for it",
            location, {"exception": failure.exception, "repo": result.source})
        facts.stopped = refusal.finding
        if names - set(modules):  # rows only their code knows: no plan of ours for them
            facts.spec = None
        return facts, refusal
    facts.built, facts.modules = as_built(result, facts.spec, modules, rule_names)
    facts.trace = result.trace
    return facts, None


def _last_line(stderr: bytes | str | None) -> str:
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    return f": {lines[-1]}" if lines else ""


def _from_json(data: dict) -> RepoBuild:
    failure = data["failure"]
    return RepoBuild(
        source=data["source"],
        layers=tuple(RepoLayer(
            index=layer["index"], from_=_tuples(layer["from"]), type=layer["type"],
            args=_tuples(layer["args"]), copies=layer["copies"], params=layer["params"])
            for layer in data["layers"]),
        stride=tuple(data["stride"]) if data["stride"] is not None else None,
        anchors=data["anchors"],
        state=data["state"],
        trace=_trace_from(data["trace"]) if data["trace"] is not None else None,
        signatures={name: [tuple(p) for p in params]
                    for name, params in data["signatures"].items()},
        failure=RepoFailure(**failure) if failure is not None else None,
        interpreter=data.get("interpreter") or {})


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _trace_from(data: dict) -> Trace:
    """The worker's Trace, rebuilt with the tuples the dataclasses use (shapes stay lists)."""
    from yolodiag.trace import LayerTrace, MismatchedAdd, SizeTrace, Trace

    return Trace(tuple(SizeTrace(
        img=tuple(size["img"]),
        layers=tuple(LayerTrace(**{**layer, "in_shapes": tuple(layer["in_shapes"])})
                     for layer in size["layers"]),
        failed_layer=size["failed_layer"], error=size["error"], failed_op=size["failed_op"],
        adds=tuple(MismatchedAdd(a["layer"], tuple(a["shapes"]), a["failed"])
                   for a in size["adds"]))
        for size in data["sizes"]))


def as_built(repo_build: RepoBuild, spec, modules: Mapping[str, ModuleEntry],
             rule_names: Mapping[str, str] | None = None
             ) -> tuple[BuiltModel, dict[str, ModuleEntry]]:
    """Their model as our BuiltModel (no network: `model` is None, the trace comes from the
    worker) and module-table entries for the names their code defines differently from ours,
    so that every check reads their layers. Each entry's rule is read off what their
    parse_model did with the row: the input width inserted (channel-aware, with the repeat
    count when it follows), the head, or the arguments as written (passthrough): "channels",
    "channels+repeats", "detect" or "passthrough", or the family's names for them in
    `rule_names`. Their last layer is the head when their model measured strides."""
    import torch

    from yolodiag.build.builder import BuiltModel, LayerRecord
    from yolodiag.build.plan import ModuleEntry, scaled_number

    first = repo_build.trace.ok_sizes[0] if repo_build.trace and repo_build.trace.ok_sizes else None
    entries: dict[str, ModuleEntry] = {}
    records = []
    head = len(repo_build.layers) - 1 if repo_build.stride is not None else None
    named = rule_names or {}
    for layer, row in zip(repo_build.layers, spec.layers):
        stock = modules.get(row.module)
        signature = repo_build.signatures.get(row.module)
        if row.module in entries:
            rule = entries[row.module].rule
        elif stock is not None and stock.decided == "table" and (
                signature is None or _same(signature, _stock_signature(stock))):
            rule = stock.rule
        else:  # their own class, or one not in the family's table (the seed's BasicBlock)
            rule = "detect" if layer.index == head else _read_rule(layer, row, spec)
            rule = named.get(rule, rule)
            differs = (f"its constructor takes ({_parameters(signature or [])}), the "
                       f"table's ({_parameters(_stock_signature(stock))})"
                       if stock is not None and signature is not None
                       and not _same(signature, _stock_signature(stock)) else None)
            entries[row.module] = ModuleEntry(
                row.module, f"{repo_build.source}:{row.module}", rule,
                cls=_signature_stub(row.module, signature or []), decided="repo",
                differs=differs)
        traced = first.layer(layer.index) if first else None
        records.append(LayerRecord(
            index=layer.index, from_=row.from_, number=scaled_number(row.number,
                                                                      spec.depth_multiple),
            module=row.module, type=layer.type, args=layer.args or (), params=layer.params,
            channels_out=(traced.channels or 0) if traced else 0, rule=rule,
            section=row.section, line=row.line))
    anchors = torch.tensor(repo_build.anchors) if repo_build.anchors is not None else None
    built = BuiltModel(spec, None, tuple(records), spec.nc, repo_build.stride, anchors,
                       torch.device("cpu"), None, _flipped(spec, anchors, repo_build.stride))
    return built, entries


def _read_rule(layer: RepoLayer, row, spec) -> str:
    """The rule their parse_model applied, from the arguments it passed: `(c1, c2, *rest)` for
    `[c2, *rest]` is channel-aware; with the repeat count third, also the repeats."""
    from yolodiag.build.plan import scaled_number

    args, written = layer.args or (), row.args
    if len(args) == len(written) + 2 and args[2] == scaled_number(row.number,
                                                                   spec.depth_multiple):
        return "channels+repeats"
    return "channels" if len(args) == len(written) + 1 else "passthrough"


def _stock_signature(entry) -> list[tuple[str, object]]:
    from yolodiag.usermodules import constructor_parameters

    return [(p.name, REQUIRED if p.default is p.empty else jsonable_default(p.default))
            for p in constructor_parameters(entry.load())]


def _parameters(signature: list) -> str:
    return ", ".join(name if default == REQUIRED else f"{name}={default!r}"
                     for name, default in signature)


def _same(theirs: list, ours: list) -> bool:
    """Signatures compared as the JSON they travel as (a default `()` arrives as `[]`)."""
    return json.dumps([list(p) for p in theirs]) == json.dumps([list(p) for p in ours])


def _signature_stub(name: str, parameters: list[tuple[str, object]]) -> type:
    """A class that has their constructor's signature and nothing else (the checks read
    parameter names and defaults; their class itself lives in the other process)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    signature = inspect.Signature([
        inspect.Parameter(p, kind) if default == REQUIRED else
        inspect.Parameter(p, kind, default=default) for p, default in parameters])
    return type(name, (), {"__signature__": signature, "__module__": __name__})


def _flipped(spec, anchors, stride) -> bool:
    """Whether their build reversed the YAML's anchor rows (YOLOv5 and YOLOv7 do when the sizes
    run against the strides)."""
    import torch

    if anchors is None or stride is None or not isinstance(spec.anchors, tuple):
        return False
    written = torch.tensor([list(row) for row in spec.anchors], dtype=torch.float32)
    theirs = (anchors * torch.tensor(stride).view(-1, 1, 1)).view(written.shape)
    return (not torch.allclose(theirs, written) and
            torch.allclose(theirs, written.flip(0)))
