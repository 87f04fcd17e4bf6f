"""Checkpoints the tests write: crafted ones whose pickles would run code, and YOLOv5-layout
ones of our own models (pickled as YOLOv5 pickles its modules: classes of models.yolo,
models.common and torch.nn, each instance carrying its module __dict__). YOLOv5 is not
needed: stand-in classes with those module names are pickled, never imported by the reader."""

from __future__ import annotations

import os
import sys
import types
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn


class _Calls:
    """Pickles as a call of `function(*args)`: what a malicious checkpoint does."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def crafted(path: Path, marker: Path, how: str = "os.system", **beside) -> Path:
    """A checkpoint whose pickle calls os.system (or builtins.eval) to create `marker`;
    `beside`: more entries of the checkpoint dict."""
    if how == "os.system":
        payload = _Calls(os.system, f"touch {marker}")
    else:
        payload = _Calls(eval, f"open({str(marker)!r}, 'w').close()")
    torch.save({"model": payload, "epoch": -1, **beside}, path)
    return path


def yolov5_layout(model: nn.Module, yaml: dict, path: Path, *,
                  top_class: str = "DetectionModel", **extra) -> Path:
    """Save `model` as train.py saves `ckpt['model']`: the module tree pickled under YOLOv5's
    module names (models.yolo.DetectionModel, models.common.<Block>, torch.nn classes).
    `top_class`: "Model" for the name YOLOv5 up to v6.2 pickles."""
    fakes: dict[str, type] = {}

    def stand_in(module: nn.Module, top: bool) -> object:
        cls = type(module)
        if cls.__module__.startswith("torch.nn") and not top:
            record = cls.__new__(cls)  # torch's own class, its children replaced below
        else:
            where, name = (("models.yolo", top_class) if top else
                           ("models.yolo" if cls.__name__ in ("Detect", "Segment")
                            else "models.common", cls.__name__))
            key = f"{where}.{name}"
            if key not in fakes:
                fakes[key] = type(name, (), {"__module__": where, "__qualname__": name})
            record = fakes[key].__new__(fakes[key])
        state = {k: v for k, v in module.__dict__.items() if not k.startswith("_")}
        state.update(training=module.training, _parameters=OrderedDict(module._parameters),
                     _buffers=OrderedDict(module._buffers),
                     _non_persistent_buffers_set=set(module._non_persistent_buffers_set),
                     _modules=OrderedDict((n, stand_in(m, False))
                                          for n, m in module._modules.items()))
        if top:
            state["yaml"] = yaml
        record.__dict__.update(state)
        return record

    saved = {name: sys.modules.get(name) for name in ("models", "models.yolo", "models.common")}
    try:
        tree = stand_in(model, True)
        for name in ("models", "models.yolo", "models.common"):
            sys.modules[name] = types.ModuleType(name)
        for key, cls in fakes.items():
            module, _, name = key.rpartition(".")
            setattr(sys.modules[module], name, cls)
        torch.save({"epoch": -1, "model": tree, "optimizer": None, **extra}, path)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return path
