"""Reading a YOLO `.pt` without running it, for any dialect whose training code pickles whole
modules (YOLOv5, YOLOv7, Ultralytics): the machinery, parameterised by the dialect's `Family`.

`torch.load(weights_only=False)` would import and run whatever the pickle names. Here the
pickle's globals are listed first (without executing anything) and checked against an explicit
allow-list: the family's model modules (any class in them, since a user's own block is pickled
from there too), `torch.nn` module classes and numpy's value reconstructors. Anything else is
refused (YD504) before a single object is built; a file that is no torch checkpoint (YD508) or
another framework's (YD509, the family's `foreign`) is named for what it is. Allowed classes
never get imported: they become inert `Record`s of their pickled state, from which the state
dict, the embedded YAML, strides, names and the training state are read. Tensors rebuild
through torch's own weights-only loader. The family's code need not be installed.
"""

from __future__ import annotations

import importlib
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from yolodiag.dialects.common.checkpoint_format import damaged, refusal, unreadable
from yolodiag.findings import Refused, Unsupported

TORCH_MODULES = re.compile(r"torch\.nn\.modules\.[a-z_]+")
# Real objects that only rebuild values: numpy arrays, scalars and dtypes, paths in `opt`.
VALUE_GLOBALS = {
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.ndarray", "numpy.dtype", "pathlib.PosixPath", "pathlib.WindowsPath",
}


@dataclass(frozen=True)
class Family:
    """What one dialect's checkpoints may name, and what its refusals say."""

    dialect: str  # the registered dialect name ("yolov5")
    title: str  # "YOLOv5 v7.0": "is not a YOLOv5 v7.0 checkpoint"
    model_modules: tuple[str, ...]  # modules whose classes become records
    foreign: Callable[[Path, list[str]], Refused | None]  # YD509 for another framework's
    foreign_global: Callable[[str], bool]  # a global of another framework (not unsafe as such)
    layout: Callable[[str], str]  # the top model class's pickled name -> the layout's name
    unsafe_hint: str  # the hint of YD504 when the weights-only loader refuses
    pass_hint: str  # the hint of YD509 for a torch file that is no checkpoint of ours
    # A narrower rule for the model classes than "any class of model_modules" (None: that one).
    allowed: Callable[[str], bool] | None = None
    # The checkpoint dict -> the pickled model its training code loads (train.py: 'model').
    model_of: Callable[[dict], Any] = lambda content: content.get("model")
    options_key: str = "opt"  # where the checkpoint keeps the training run's options


class Record:
    """An inert stand-in for a pickled class instance: it keeps the pickled state, nothing
    else (no method of the original class exists here)."""

    _pickled_name = "?"

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    @property
    def attributes(self) -> dict[str, Any]:
        state = self.__dict__.get("state")
        return state if isinstance(state, dict) else {}


@dataclass
class CheckpointInfo:
    """What a checkpoint holds, read without executing it."""

    path: str
    layout: str  # "git checkout (models.yolo)", "pip package (yolov5.models)" or "state dict"
    state: dict[str, Any]  # key -> tensor, float32, as train.py's `ckpt['model'].float()`
    yaml: dict | None  # the model's embedded YAML (what train.py builds without --cfg)
    stride: list[float] = field(default_factory=list)
    names: Any = None
    nc: int | None = None
    epoch: int | None = None
    date: str | None = None
    opt: dict | None = None
    has_optimizer: bool = False
    has_ema: bool = False
    half: bool = False
    globals: tuple[str, ...] = ()
    dialect: str = ""  # the dialect whose reader read it
    # Tensors per saved optimizer parameter group (None: no optimizer state, or unreadable).
    optimizer_groups: tuple[int, ...] | None = None
    ema_shapes: dict[str, tuple[int, ...]] | None = None  # the saved EMA model's state dict

    @cached_property  # read by YD505 and by the report: one pass over every tensor
    def nonfinite(self) -> list[str]:
        import torch

        return [k for k, v in self.state.items()
                if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def pickled_globals(path: str | Path) -> list[str] | None:
    """The globals the pickle of a readable torch zip checkpoint names (nothing unpickled);
    None for a file that is none (the reader says what it is instead)."""
    import torch

    path = Path(path)
    lister = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if not path.is_file() or lister is None or unreadable(path) is not None:
        return None
    try:
        return sorted(lister(str(path)))
    except Exception:  # a zip directory intact, its pickle record not: the reader refuses
        return None


def read_checkpoint(path: str | Path, family: Family) -> CheckpointInfo:
    """Read one of `family`'s `.pt` files (with or without optimizer and EMA, with numpy
    values) or a plain state dict. Raises Refused: YD508 for a file that is no readable torch
    checkpoint (empty, text, truncated), YD509 for another framework's checkpoint, YD504
    naming the globals outside the allow-list (nothing is built)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise Unsupported(f"{path}: no such checkpoint file")
    if not all(hasattr(torch.serialization, name)
               for name in ("get_unsafe_globals_in_checkpoint", "safe_globals")):
        raise Unsupported(f"{path}: reading a checkpoint without running it needs torch 2.6 or "
                          f"newer (this is {torch.__version__})")
    refused = unreadable(path)
    if refused is not None:
        raise refused
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as e:  # a zip directory intact, its pickle record not
        raise damaged(path, e) from e
    outside = [n for n in names if not _allowed(n, family)]
    # another framework's checkpoint is named as such only when it names nothing else
    if all(map(family.foreign_global, outside)) and (refused := family.foreign(path, names)):
        raise refused
    if outside:
        raise refusal(
            "YD504", f"{path} names globals outside yolodiag's allow-list: "
            f"{', '.join(outside)}; nothing was loaded or run",
            "do not load this file with torch.load(weights_only=False): it would run them",
            path, {"globals": outside})
    with torch.serialization.safe_globals(_stand_ins(names)):
        try:
            content = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:  # the weights-only unpickler refused something
            raise refusal("YD504", f"{path} cannot be read safely: {e}", family.unsafe_hint,
                          path) from e
        except Exception as e:  # a record of the archive (a tensor's storage) is damaged
            raise damaged(path, e) from e
    return _info(path, content, tuple(names), family)


def _allowed(name: str, family: Family) -> bool:
    module, _, attribute = name.rpartition(".")
    if family.allowed is not None and family.allowed(name):
        return True
    if module in family.model_modules:
        return attribute.isidentifier()
    if TORCH_MODULES.fullmatch(module):
        return attribute.isidentifier() and attribute[:1].isupper()
    return name in VALUE_GLOBALS or (module == "numpy.dtypes" and attribute.endswith("DType"))


def _stand_ins(names: list[str]) -> list[tuple[Any, str]]:
    """(object, pickled name) pairs: records for classes, real objects for values."""
    pairs: list[tuple[Any, str]] = []
    for name in names:
        module, _, attribute = name.rpartition(".")
        if name in VALUE_GLOBALS or module == "numpy.dtypes":
            pairs.append((getattr(importlib.import_module(module), attribute), name))
        else:
            record = type(attribute, (Record,), {"__module__": f"yolodiag.inert.{module}",
                                                 "_pickled_name": name})
            pairs.append((record, name))
    if "numpy.dtype" in names:  # a dtype's state is set on its concrete class
        import numpy.dtypes

        pairs += [(getattr(numpy.dtypes, a), f"numpy.dtypes.{a}")
                  for a in dir(numpy.dtypes) if a.endswith("DType")]
    return pairs


def _info(path: Path, content: Any, names: tuple[str, ...], family: Family) -> CheckpointInfo:
    import torch

    model = family.model_of(content) if isinstance(content, dict) else None
    if isinstance(model, Record):
        attributes = model.attributes
        raw = state_dict(model)
        half = any(v.dtype == torch.float16 for v in raw.values())
        stride = attributes.get("stride")
        ema = content.get("ema")
        return CheckpointInfo(
            str(path), family.layout(model._pickled_name),
            {k: v.float() if v.is_floating_point() else v for k, v in raw.items()},
            attributes.get("yaml") if isinstance(attributes.get("yaml"), dict) else None,
            [float(s) for s in stride.tolist()] if isinstance(stride, torch.Tensor) else [],
            attributes.get("names"), attributes.get("nc"), _int(content.get("epoch")),
            str(content["date"]) if content.get("date") else None,
            (content.get(family.options_key)
             if isinstance(content.get(family.options_key), dict) else None),
            content.get("optimizer") is not None, ema is not None, half, names,
            family.dialect, _optimizer_groups(content.get("optimizer")),
            ({k: tuple(v.shape) for k, v in state_dict(ema).items()}
             if isinstance(ema, Record) else None))
    if isinstance(content, dict) and all(isinstance(v, torch.Tensor) for v in content.values()):
        return CheckpointInfo(str(path), "state dict", {k: v.float() if v.is_floating_point()
                                                        else v for k, v in content.items()},
                              None, globals=names, dialect=family.dialect)
    keys = sorted(map(str, content))[:8] if isinstance(content, dict) else []
    raise refusal("YD509", f"{path} is not a {family.title} checkpoint: it holds "
                  f"{type(content).__name__}" + (f" with keys {', '.join(keys)}" if keys else "")
                  + ", neither train.py's dict with a pickled 'model' nor a state dict",
                  family.pass_hint, path, {"framework": None, "model_class": None})


def state_dict(record: Record, prefix: str = "") -> dict[str, Any]:
    """The state dict nn.Module.state_dict() would give, from the pickled module records."""
    attributes = record.attributes
    hidden = attributes.get("_non_persistent_buffers_set") or set()
    out: dict[str, Any] = {}
    for name, value in (attributes.get("_parameters") or {}).items():
        if value is not None:
            out[prefix + name] = value.detach()
    for name, value in (attributes.get("_buffers") or {}).items():
        if value is not None and name not in hidden:
            out[prefix + name] = value
    for name, child in (attributes.get("_modules") or {}).items():
        if isinstance(child, Record):
            out.update(state_dict(child, f"{prefix}{name}."))
    return out


def _optimizer_groups(saved: Any) -> tuple[int, ...] | None:
    """How many tensors each parameter group of a saved `optimizer.state_dict()` holds: what
    torch's `Optimizer.load_state_dict` compares with the new optimizer's groups."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or not all(isinstance(g, dict) and
                                               isinstance(g.get("params"), list)
                                               for g in groups):
        return None
    return tuple(len(g["params"]) for g in groups)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
