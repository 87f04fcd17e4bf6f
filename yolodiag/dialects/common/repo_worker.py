"""The `--repo` worker: runs in the user's interpreter, imports their checkout's model module (a
YOLOv5 or YOLOv7 yolo.py, whose model class is `Model`, or Ultralytics' nn/tasks.py, whose is
`DetectionModel`: all keep the layers in `.model`), builds the YAML with it and writes what came
back as plain JSON for `common/repo.py` (which explains the protocol). Family-neutral: each
dialect's repo.py says which module to import and which dialect the result is read as.

Run as a script (`python repo_worker.py --worker REQUEST.json RESULT.json`): it needs torch,
numpy and pyyaml in that interpreter, not an installed yolodiag (our package is loaded from this
folder by path), and imports torch only after their code has. Nothing of their code is read
or copied: constructor arguments are recorded by wrapping the classes' `__init__` at run time,
failures are located from the traceback's frames.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import inspect
import json
import os
import platform
import sys
import traceback
import weakref
from pathlib import Path
from typing import Any

REQUIRED = "<required>"  # a constructor parameter without a default, in `signatures`
# Each instance's constructor arguments, beside the instance rather than on it: their code may
# deep-copy a module (Ultralytics' end-to-end heads do), and an argument such as a consumed
# generator cannot be copied.
_RECORDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _worker(request_file: str, result_file: str) -> None:
    request = json.loads(Path(request_file).read_text(encoding="utf-8"))
    result: dict[str, Any] = {"source": request["source"], "layers": [], "stride": None,
                              "anchors": None, "state": {}, "trace": None, "signatures": {},
                              "failure": None, "interpreter": _interpreter()}
    _load_yolodiag(request["package"])
    if request["path"] is not None:
        sys.path.insert(0, request["path"])
    try:
        yolo = importlib.import_module(request["module"])
    except (Exception, SystemExit) as e:
        result["failure"] = _failure(e, "import", None)
        return _write(result_file, {**result, "interpreter": _interpreter()})
    result["source"] = getattr(yolo, "__file__", None) or request["source"]
    result["interpreter"] = _interpreter()

    from torch import nn

    from yolodiag.dialects import DIALECTS

    dialect = DIALECTS[request["dialect"]]
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
    if "anchors" in dialect.capabilities:  # an anchor-free head keeps its anchor points there
        result["anchors"] = _listed(getattr(model.model[-1], "anchors", None))
    result["state"] = {k: list(v.shape) for k, v in model.state_dict().items()}
    try:
        result["trace"] = _trace(model, request["sizes"], dialect)
    except Exception as e:
        result["failure"] = _failure(e, "trace", _failing_layer(e, nn))
    _write(result_file, result)


def _interpreter() -> dict[str, str | None]:
    """Which Python ran their code, and the torch their code imported (None before it has)."""
    torch = sys.modules.get("torch")
    return {"python": sys.executable, "version": platform.python_version(),
            "torch": getattr(torch, "__version__", None)}


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
            _RECORDED[self] = (args, kwargs)
    return __init__


def _layer(position: int, m, nn) -> dict:
    stacked = type(m) is nn.Sequential  # parse_model's copies (n > 1)
    first = m[0] if stacked else m
    recorded = _RECORDED.get(first)
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
    if isinstance(value, nn.Module) and value in _RECORDED:
        args, kwargs = _RECORDED[value]
        name = type(value).__name__
        prefix = "nn." if getattr(nn, name, None) is type(value) else ""
        parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
        return f"{prefix}{name}({', '.join(parts)})"
    return repr(value)


def _trace(model, sizes: list[list[int]], dialect) -> dict:
    """yolodiag's tracer on their model: real CPU tensors (their code may not run on meta), each
    layer's errors re-raised as the LayerFailed by which our tracer names the failing layer."""
    from types import SimpleNamespace

    import torch

    from yolodiag.build.builder import LayerFailed
    from yolodiag.trace import trace

    for index, layer in enumerate(model.model):
        layer.forward = _naming(index, layer.forward, LayerFailed)
    head = model.model[-1]
    is_head = hasattr(head, "nl") and hasattr(head, "anchors")
    built = SimpleNamespace(model=model, spec=SimpleNamespace(ch=3), device=torch.device("cpu"),
                            head_index=len(model.model) - 1 if is_head else None,
                            dialect=dialect)
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
    layer (YOLOv5 and YOLOv7 set `i` on each layer module)."""
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
            found[name] = [[p.name, REQUIRED if p.default is p.empty
                            else jsonable_default(p.default)] for p in parameters
                           if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return found


def jsonable_default(value: Any) -> Any:
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
        sys.exit("usage: repo_worker.py --worker REQUEST.json RESULT.json (run by yolodiag "
                 "--repo)")
