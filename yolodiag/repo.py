"""`--repo DIR`: build the model YAML with the user's own YOLOv5 code and bring its layers back.

Their code runs in a subprocess (an explicit opt-in: it executes what is in their folder), in the
interpreter they name, and hands back plain data in a JSON file: per layer the class built, the
constructor arguments their `parse_model` passed, copies and parameters; strides, anchors,
state-dict shapes, a shape trace by yolodiag's own tracer, and the constructor signatures of the
YAML's module names. The worker is this file run as a script: it needs torch, numpy and pyyaml
in that interpreter, not an installed yolodiag (our package is loaded from this folder by path).

Nothing of their code is read or copied: constructor arguments are recorded by wrapping the
classes' `__init__` at run time, failures are located from the traceback's frames.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yolodiag.reference.builder import BuiltModel
    from yolodiag.reference.table import ModuleEntry
    from yolodiag.trace import Trace

REQUIRED = "<required>"  # a constructor parameter without a default, in `signatures`
_ARGS = "_yolodiag_args"  # where the worker leaves each instance's constructor arguments


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


def build_with_repo(repo: str | Path, yaml_path: str | Path, sizes: list[tuple[int, int]],
                    names: list[str], nc: int | None = None, python: str | None = None,
                    timeout: float = 600) -> RepoBuild:
    """Build `yaml_path` with the YOLOv5 code at `repo` in a subprocess running `python`.

    `repo`: a checkout (a folder with models/yolo.py), an installed `yolov5` package folder, or
    "yolov5" / "pip" for the package installed in `python`. Their code failing to import, build
    or run comes back in `failure`; raises Unsupported when `repo` is none of those, or when the
    subprocess ends without a result (a crash, a timeout).
    """
    from yolodiag.findings import Unsupported

    path_entry, module, source = _locate(repo)
    with tempfile.TemporaryDirectory(prefix="yolodiag-repo-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request.write_text(json.dumps({
            "path": path_entry, "module": module, "source": source,
            "package": str(Path(__file__).resolve().parent),
            "yaml": str(Path(yaml_path).resolve()), "sizes": [list(s) for s in sizes],
            "names": list(names), "nc": nc}), encoding="utf-8")
        command = [python or sys.executable, "-W", "ignore", str(Path(__file__).resolve()),
                   "--worker", str(request), str(result)]
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


def _locate(repo: str | Path) -> tuple[str | None, str, str]:
    """(folder to put first on sys.path, module to import, what to call it)."""
    from yolodiag.findings import Unsupported

    folder = Path(repo).expanduser()
    # A checkout named `yolov5` (git clone's default) is the folder, not the package.
    if folder.is_dir() and (folder / "models" / "yolo.py").is_file():
        folder = folder.resolve()
        source = str(folder / "models" / "yolo.py")
        if not (folder / "__init__.py").is_file():
            return str(folder), "models.yolo", source
        if folder.name.isidentifier():
            return str(folder.parent), f"{folder.name}.models.yolo", source
    elif str(repo) in ("yolov5", "pip"):
        return None, "yolov5.models.yolo", "yolov5.models.yolo"
    raise Unsupported(f"--repo {repo}: expected a YOLOv5 checkout (a folder with models/yolo.py),"
                      " the installed yolov5 package folder, or `yolov5` for that package")


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
        failure=RepoFailure(**failure) if failure is not None else None)


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


def as_built(repo_build: RepoBuild, spec) -> tuple[BuiltModel, dict[str, ModuleEntry]]:
    """Their model as our BuiltModel (no network: `model` is None, the trace comes from the
    worker) and module-table entries for the names their code defines differently from ours,
    so that every check reads their layers. Each entry's rule is read off what their
    parse_model did with the row: the input width inserted (channel-aware, with the repeat
    count when it follows), the head, or the arguments as written (passthrough)."""
    import torch

    from yolodiag.reference.builder import BuiltModel, LayerRecord
    from yolodiag.reference.rules import scaled_number
    from yolodiag.reference.table import MODULES, ModuleEntry

    first = repo_build.trace.ok_sizes[0] if repo_build.trace and repo_build.trace.ok_sizes else None
    entries: dict[str, ModuleEntry] = {}
    records = []
    head = len(repo_build.layers) - 1 if repo_build.anchors is not None else None
    for layer, row in zip(repo_build.layers, spec.layers):
        stock = MODULES.get(row.module)
        signature = repo_build.signatures.get(row.module)
        if row.module in entries:
            rule = entries[row.module].rule
        elif stock is not None and (signature is None or _same(signature, _stock_signature(stock))):
            rule = stock.rule
        else:
            rule = "detect" if layer.index == head else _read_rule(layer, row, spec)
            entries[row.module] = ModuleEntry(
                row.module, f"{repo_build.source}:{row.module}", rule,
                cls=_signature_stub(row.module, signature or []), decided="repo")
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
    from yolodiag.reference.rules import scaled_number

    args, written = layer.args or (), row.args
    if len(args) == len(written) + 2 and args[2] == scaled_number(row.number,
                                                                   spec.depth_multiple):
        return "channels+repeats"
    return "channels" if len(args) == len(written) + 1 else "passthrough"


def _stock_signature(entry) -> list[tuple[str, object]]:
    from yolodiag.usermodules import constructor_parameters

    return [(p.name, REQUIRED if p.default is p.empty else _default(p.default))
            for p in constructor_parameters(entry.load())]


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
    return type(name, (), {"__signature__": signature, "__module__": "yolodiag.repo"})


def _flipped(spec, anchors, stride) -> bool:
    """Whether their build reversed the YAML's anchor rows (YOLOv5 does when the sizes run
    against the strides)."""
    import torch

    if anchors is None or stride is None or not isinstance(spec.anchors, tuple):
        return False
    written = torch.tensor([list(row) for row in spec.anchors], dtype=torch.float32)
    theirs = (anchors * torch.tensor(stride).view(-1, 1, 1)).view(written.shape)
    return (not torch.allclose(theirs, written) and
            torch.allclose(theirs, written.flip(0)))


# ---- the worker: runs in their interpreter, imports torch only after their code imported ----


def _worker(request_file: str, result_file: str) -> None:
    request = json.loads(Path(request_file).read_text(encoding="utf-8"))
    result: dict[str, Any] = {"source": request["source"], "layers": [], "stride": None,
                              "anchors": None, "state": {}, "trace": None, "signatures": {},
                              "failure": None}
    _load_yolodiag(request["package"])
    if request["path"] is not None:
        sys.path.insert(0, request["path"])
    try:
        yolo = importlib.import_module(request["module"])
    except (Exception, SystemExit) as e:
        result["failure"] = _failure(e, "import", None)
        return _write(result_file, result)
    result["source"] = getattr(yolo, "__file__", None) or request["source"]

    from torch import nn

    result["signatures"] = _signatures(request["names"], yolo, nn)
    _record_constructor_args({c for space in (vars(yolo), vars(nn)) for c in space.values()
                              if isinstance(c, type) and issubclass(c, nn.Module)
                              and _init_definer(c) is not nn.Module})
    try:
        cls = getattr(yolo, "DetectionModel", None) or yolo.Model
        extra = {"nc": request["nc"]} if request["nc"] is not None else {}
        model = cls(request["yaml"], ch=3, **extra)
    except (Exception, SystemExit) as e:
        result["failure"] = _failure(e, "build", _failing_layer(e, nn))
        return _write(result_file, result)

    result["layers"] = [_layer(position, m, nn) for position, m in enumerate(model.model)]
    result["stride"] = _listed(getattr(model, "stride", None))
    result["anchors"] = _listed(getattr(model.model[-1], "anchors", None))
    result["state"] = {k: list(v.shape) for k, v in model.state_dict().items()}
    try:
        result["trace"] = _trace(model, request["sizes"])
    except Exception as e:
        result["failure"] = _failure(e, "trace", _failing_layer(e, nn))
    _write(result_file, result)


def _listed(value: Any) -> Any:
    """A tensor as nested lists; None (or anything not a tensor) as None."""
    return value.tolist() if callable(getattr(value, "tolist", None)) else None


def _load_yolodiag(package: str) -> None:
    """Import our package from its folder by path: putting its parent on sys.path could put our
    own site-packages (another torch) ahead of theirs when yolodiag is pip-installed."""
    spec = importlib.util.spec_from_file_location(
        "yolodiag", Path(package) / "__init__.py", submodule_search_locations=[package])
    module = importlib.util.module_from_spec(spec)
    sys.modules["yolodiag"] = module
    spec.loader.exec_module(module)


def _record_constructor_args(classes: set[type]) -> None:
    """Wrap the `__init__` each class runs so every instance keeps the arguments it was built
    with: what their parse_model passed, without reading their code. That `__init__` may live
    in a base outside the namespaces searched (nn.MaxPool2d's is _MaxPoolNd's)."""
    for definer in {_init_definer(cls) for cls in classes}:
        definer.__init__ = _recording(definer, definer.__dict__["__init__"])


def _init_definer(cls: type) -> type:
    return next(c for c in cls.__mro__ if "__init__" in c.__dict__)


def _recording(cls: type, init):
    @functools.wraps(init)  # inspect.signature still sees the original
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        # Only the most-derived constructor holds the caller's arguments: a subclass's
        # super().__init__(...) passes its own, which must not overwrite them.
        if _init_definer(type(self)) is cls:
            object.__setattr__(self, _ARGS, (args, kwargs))
    return __init__


def _layer(position: int, m, nn) -> dict:
    stacked = type(m) is nn.Sequential  # parse_model's copies (n > 1)
    first = m[0] if stacked else m
    recorded = getattr(first, _ARGS, None)
    return {"index": getattr(m, "i", position), "from": getattr(m, "f", -1),
            "type": type(first).__name__,
            "args": _plain(list(recorded[0]), nn) if recorded is not None else None,
            "copies": len(m) if stacked else 1,
            "params": sum(p.numel() for p in m.parameters())}


def _plain(value: Any, nn) -> Any:
    """JSON-able: lists for sequences, an nn.Module as the text that builds it."""
    if isinstance(value, (list, tuple)):
        return [_plain(v, nn) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, nn.Module) and getattr(value, _ARGS, None) is not None:
        args, kwargs = getattr(value, _ARGS)
        name = type(value).__name__
        prefix = "nn." if getattr(nn, name, None) is type(value) else ""
        parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
        return f"{prefix}{name}({', '.join(parts)})"
    return repr(value)


def _trace(model, sizes: list[list[int]]) -> dict:
    """yolodiag's tracer on their model: real CPU tensors (their code may not run on meta), each
    layer's errors re-raised as the LayerFailed by which our tracer names the failing layer."""
    from types import SimpleNamespace

    import torch

    from yolodiag.reference.builder import LayerFailed
    from yolodiag.trace import trace

    for index, layer in enumerate(model.model):
        layer.forward = _naming(index, layer.forward, LayerFailed)
    head = model.model[-1]
    is_head = hasattr(head, "nl") and hasattr(head, "anchors")
    built = SimpleNamespace(model=model, spec=SimpleNamespace(ch=3), device=torch.device("cpu"),
                            head_index=len(model.model) - 1 if is_head else None)
    return dataclasses.asdict(trace(built, [tuple(s) for s in sizes]))


def _naming(index: int, forward, LayerFailed):
    def named(*args, **kwargs):
        try:
            return forward(*args, **kwargs)
        except LayerFailed:
            raise
        except Exception as e:
            raise LayerFailed(index, e) from e
    return named


def _failing_layer(error: BaseException, nn) -> int | None:
    """The row their code was on: parse_model's loop index `i`, else the innermost running
    layer (YOLOv5 sets `i` on each layer module)."""
    frames = [frame for frame, _ in traceback.walk_tb(error.__traceback__)]
    for frame in frames:
        if frame.f_code.co_name == "parse_model" and _is_index(frame.f_locals.get("i")):
            return frame.f_locals["i"]
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")
        if isinstance(owner, nn.Module):
            index = owner.__dict__.get("i")
            if _is_index(index):
                return index
    return None


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _failure(error: BaseException, during: str, layer: int | None) -> dict:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return {"layer": layer, "exception": type(error).__name__,
            "message": lines[0] if lines else "", "during": during}


def _signatures(names: list[str], yolo, nn) -> dict[str, list[list]]:
    """Positional constructor parameters per name, resolved by attribute lookup, never eval."""
    found = {}
    for name in names:
        prefix = next((p for p in ("torch.nn.", "nn.") if name.startswith(p)), None)
        obj = getattr(nn if prefix else yolo, name[len(prefix):] if prefix else name, None)
        try:
            parameters = inspect.signature(obj).parameters.values() if callable(obj) else None
        except (TypeError, ValueError):
            parameters = None
        if parameters is not None:
            found[name] = [[p.name, REQUIRED if p.default is p.empty else _default(p.default)]
                           for p in parameters
                           if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return found


def _default(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _write(result_file: str, result: dict) -> None:
    partial = Path(result_file + ".part")  # a crash mid-write leaves no half a result
    partial.write_text(json.dumps(result), encoding="utf-8")
    os.replace(partial, result_file)


if __name__ == "__main__":
    # Run as a script, sys.path starts with this folder, whose trace.py would shadow the
    # standard library's `trace` for their code.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    if sys.argv[1:2] == ["--worker"] and len(sys.argv) == 4:
        _worker(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: repo.py --worker REQUEST.json RESULT.json (run by yolodiag --repo)")
