"""YOLOv5 checkpoints, read without running them, and what train.py would transfer from one.

A YOLOv5 `.pt` pickles whole Python objects: `torch.load(weights_only=False)` would import and
run whatever the pickle names. Here the pickle's globals are listed first (without executing
anything) and checked against an explicit allow-list; anything else is refused (YD504) before a
single object is built, and a file that is no torch checkpoint at all (YD508) or another
framework's (YD509) is named for what it is (checkpoint_format). Allowed classes of YOLOv5's
model modules and of `torch.nn` never get imported: they become inert records of their
pickled state, from which the state dict, the embedded YAML, strides and names are read.
Tensors rebuild through torch's own weights-only loader; numpy values through numpy's
reconstructors. YOLOv5 need not be installed.

`transfer` reproduces train.py v7.0's `--weights` logic: which model it builds (the `--cfg`
YAML, or the checkpoint's own embedded YAML without one), which keys it excludes (anchors when
a cfg is given and it does not resume) and the name-and-shape intersection it loads.
"""

from __future__ import annotations

import importlib
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolodiag.dialects.yolov5.checkpoint_format import (
    damaged,
    foreign,
    refusal,
    ultralytics_global,
    unreadable,
)
from yolodiag.findings import Unsupported

# Modules whose classes YOLOv5 checkpoints pickle: the git checkout's and the pip package's.
# Their classes are never imported here: each becomes an inert record (any class name, since a
# user's own block, e.g. the seed's models.common.BasicBlock, is pickled from there too).
MODEL_MODULES = ("models.yolo", "models.common", "models.experimental",
                 "yolov5.models.yolo", "yolov5.models.common", "yolov5.models.experimental")
TORCH_MODULES = re.compile(r"torch\.nn\.modules\.[a-z_]+")
# Real objects that only rebuild values: numpy arrays, scalars and dtypes, paths in `opt`.
VALUE_GLOBALS = {
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.ndarray", "numpy.dtype", "pathlib.PosixPath", "pathlib.WindowsPath",
}


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
    """What a YOLOv5 checkpoint holds, read without executing it."""

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

    @property
    def nonfinite(self) -> list[str]:
        import torch

        return [k for k, v in self.state.items()
                if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read a YOLOv5 `.pt` (either layout, with or without optimizer and EMA, with numpy values)
    or a plain state dict. Raises Refused: YD508 for a file that is no readable torch
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
    outside = [n for n in names if not _allowed(n)]
    # another framework's checkpoint is named as such only when it names nothing else
    if all(map(ultralytics_global, outside)) and (refused := foreign(path, names)):
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
            raise refusal("YD504", f"{path} cannot be read safely: {e}",
                          "check that this is a YOLOv5 checkpoint", path) from e
        except Exception as e:  # a record of the archive (a tensor's storage) is damaged
            raise damaged(path, e) from e
    return _info(path, content, tuple(names))


def _allowed(name: str) -> bool:
    module, _, attribute = name.rpartition(".")
    if module in MODEL_MODULES:
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


def _info(path: Path, content: Any, names: tuple[str, ...]) -> CheckpointInfo:
    import torch

    if isinstance(content, dict) and isinstance(content.get("model"), Record):
        model = content["model"]
        attributes = model.attributes
        layout = ("pip package (yolov5.models)" if model._pickled_name.startswith("yolov5.")
                  else "git checkout (models.yolo)")
        raw = _state_dict(model)
        half = any(v.dtype == torch.float16 for v in raw.values())
        stride = attributes.get("stride")
        return CheckpointInfo(
            str(path), layout, {k: v.float() if v.is_floating_point() else v
                                for k, v in raw.items()},
            attributes.get("yaml") if isinstance(attributes.get("yaml"), dict) else None,
            [float(s) for s in stride.tolist()] if isinstance(stride, torch.Tensor) else [],
            attributes.get("names"), attributes.get("nc"), _int(content.get("epoch")),
            str(content["date"]) if content.get("date") else None,
            content.get("opt") if isinstance(content.get("opt"), dict) else None,
            content.get("optimizer") is not None, content.get("ema") is not None, half, names)
    if isinstance(content, dict) and all(isinstance(v, torch.Tensor) for v in content.values()):
        return CheckpointInfo(str(path), "state dict", {k: v.float() if v.is_floating_point()
                                                        else v for k, v in content.items()},
                              None, globals=names)
    keys = sorted(map(str, content))[:8] if isinstance(content, dict) else []
    raise refusal("YD509", f"{path} is not a YOLOv5 v7.0 checkpoint: it holds "
                  f"{type(content).__name__}" + (f" with keys {', '.join(keys)}" if keys else "")
                  + ", neither train.py's dict with a pickled 'model' nor a state dict",
                  "pass a YOLOv5 .pt (yolov5s.pt, a train.py weights/last.pt)", path,
                  {"framework": None, "model_class": None})


def _state_dict(record: Record, prefix: str = "") -> dict[str, Any]:
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
            out.update(_state_dict(child, f"{prefix}{name}."))
    return out


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# -- train.py's transfer -----------------------------------------------------------------------


@dataclass(frozen=True)
class KeyTransfer:
    key: str
    layer: int | None
    status: str  # "transferred", "shape" (differs), "missing" (not in the checkpoint), "excluded"
    model_shape: tuple[int, ...]
    checkpoint_shape: tuple[int, ...] | None = None

    @property
    def counter(self) -> bool:
        """BatchNorm's num_batches_tracked: a 0-d step counter, so any BatchNorm's matches by
        shape. train.py counts it in `Transferred X/Y`; it carries nothing learnt."""
        return self.key.endswith(".num_batches_tracked")


@dataclass
class Transfer:
    """What train.py v7.0 does with `--weights`: the model it builds and what it loads."""

    cfg_given: bool
    resume: bool
    nc: int
    spec: Any  # the ModelSpec of the model train.py builds
    keys: list[KeyTransfer]
    unused: list[str]  # checkpoint keys the model has no place for

    @property
    def transferred(self) -> int:
        return sum(k.status == "transferred" for k in self.keys)

    @property
    def total(self) -> int:
        return len(self.keys)

    def random_layers(self) -> list[int]:
        """Layers that got no learnt tensor (a BatchNorm step counter is none), the head left
        out (its output convolutions change with the class count in any fine-tuning)."""
        head = len(self.spec.layers) - 1
        return [i for i, keys in sorted(self.layers().items())
                if i != head and not any(k.status == "transferred" and not k.counter
                                         for k in keys)]

    def layers(self) -> dict[int, list[KeyTransfer]]:
        by_layer: dict[int, list[KeyTransfer]] = {}
        for key in self.keys:
            if key.layer is not None:
                by_layer.setdefault(key.layer, []).append(key)
        return by_layer

    def as_dict(self) -> dict[str, Any]:
        layers = []
        for index, keys in sorted(self.layers().items()):
            done = sum(k.status == "transferred" for k in keys)
            layers.append({"layer": index, "transferred": done, "total": len(keys),
                           "skipped": [{"key": k.key, "why": k.status,
                                        "model_shape": list(k.model_shape),
                                        "checkpoint_shape": (list(k.checkpoint_shape)
                                                             if k.checkpoint_shape else None)}
                                       for k in keys if k.status != "transferred"]})
        return {"cfg_given": self.cfg_given, "resume": self.resume, "nc": self.nc,
                "transferred": self.transferred, "total": self.total,
                "log": f"Transferred {self.transferred}/{self.total} items",
                "layers": layers, "unused": self.unused}


def transfer(checkpoint: CheckpointInfo, cfg_spec, nc: int | None = None, *,
             resume: bool = False, modules: dict | None = None) -> Transfer:
    """train.py v7.0: `Model(cfg or ckpt['model'].yaml, nc=nc)`, then the checkpoint's float
    state intersected with the model's by key and shape, without anchor keys when a cfg is
    given and it does not resume. `cfg_spec` None: no --cfg (the embedded YAML is built).
    `modules`: the user's blocks (--modules), for either YAML."""
    from yolodiag.build.builder import build

    spec = cfg_spec if cfg_spec is not None else embedded_spec(checkpoint, modules)
    nc = nc or spec.nc
    built = build(spec, nc=nc, device="meta", modules=modules)
    model_state = built.model.state_dict()
    exclude = ("anchor",) if cfg_spec is not None and not resume else ()
    keys = []
    for key, value in model_state.items():
        layer = _layer_of(key)
        theirs = checkpoint.state.get(key)
        shape = tuple(value.shape)
        if any(x in key for x in exclude):
            status = "excluded"
        elif theirs is None:
            status = "missing"
        elif tuple(theirs.shape) != shape:
            status = "shape"
        else:
            status = "transferred"
        keys.append(KeyTransfer(key, layer, status, shape,
                                tuple(theirs.shape) if theirs is not None else None))
    unused = [k for k in checkpoint.state if k not in model_state]
    return Transfer(cfg_spec is not None, resume, nc, spec, keys, unused)


def embedded_spec(checkpoint: CheckpointInfo, modules: dict | None = None):
    """The ModelSpec of the checkpoint's own embedded YAML (as text, read like a file)."""
    import yaml

    from yolodiag.spec import parse_spec

    if checkpoint.yaml is None:
        raise refusal("YD509", f"{checkpoint.path} is a plain state dict, not a YOLOv5 v7.0 "
                      "checkpoint: it has no embedded model YAML to build without --cfg",
                      "give the model YAML with --cfg", checkpoint.path,
                      {"framework": None, "model_class": None})
    text = yaml.safe_dump(checkpoint.yaml, sort_keys=False)
    return parse_spec(text, f"{checkpoint.path}:yaml", extra_modules=frozenset(modules or ()))


def _layer_of(key: str) -> int | None:
    match = re.match(r"model\.(\d+)\.", key)
    return int(match.group(1)) if match else None

