"""Checkpoints the tests write: crafted ones whose pickles would run code, and YOLOv5-layout
(and YOLOv7 per-epoch) ones of our own models, pickled as those train.py files pickle their
modules: classes of models.yolo, models.common and torch.nn, each instance carrying its module
__dict__. Neither YOLOv5 nor YOLOv7 is needed: stand-in classes with those module names are
pickled, never imported by the reader."""

from __future__ import annotations

import contextlib
import copy
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
    return _pickled(model, yaml, path, top_class, ("Detect", "Segment"),
                    {"epoch": -1, "optimizer": None, **extra})


def yolov7_per_epoch(model: nn.Module, yaml: dict, path: Path,
                     optimizer_groups: tuple[int, ...]) -> Path:
    """Save `model` as YOLOv7's train.py saves `epoch_NNN.pt`: model and EMA in half under
    YOLOv7's module names (models.yolo.Model, its heads in models.yolo, blocks in
    models.common), and an optimizer state whose parameter groups hold `optimizer_groups`
    tensors (no-decay, weights, biases)."""
    first = [sum(optimizer_groups[:i]) for i in range(len(optimizer_groups))]
    optimizer = {"state": {}, "param_groups": [
        {"lr": 0.01, "momentum": 0.937, "nesterov": True, "params": list(range(a, a + n))}
        for a, n in zip(first, optimizer_groups)]}
    half = copy.deepcopy(model).half()
    return _pickled(half, yaml, path, "Model", ("Detect", "IDetect", "IAuxDetect"),
                    {"epoch": 2, "best_fitness": 0.0, "training_results": "", "updates": 6,
                     "optimizer": optimizer, "wandb_id": None}, ema=True)


def _yolov5_place(top_class: str, head_classes: tuple[str, ...]):
    """Where YOLOv5 and YOLOv7 pickle a class from: (module, class name)."""
    def place(name: str, top: bool) -> tuple[str, str]:
        return (("models.yolo", top_class) if top else
                ("models.yolo" if name in head_classes else "models.common", name))
    return place


def _ultralytics_place(name: str, top: bool) -> tuple[str, str]:
    """Where Ultralytics pickles a class from: its tasks, head, conv and block modules."""
    if top:
        return "ultralytics.nn.tasks", "DetectionModel"
    if name in ("Detect", "v10Detect"):
        return "ultralytics.nn.modules.head", name
    conv = {"Conv", "DWConv", "Concat", "Conv2", "RepConv", "ConvTranspose", "Focus"}
    return f"ultralytics.nn.modules.{'conv' if name in conv else 'block'}", name


def ultralytics_midtrain(model: nn.Module, yaml: dict, path: Path) -> Path:
    """Save `model` as Ultralytics' trainer saves last.pt during training: `model` None, the
    EMA in half, `updates`, `optimizer`, `train_args` (shared/golden/ultralytics/transfers.json
    `midtrain_checkpoint_structure`)."""
    half = copy.deepcopy(model).half()
    return _pickled(half, yaml, path, None, (), {
        "epoch": 1, "best_fitness": 0.0, "updates": 1, "optimizer": {"state": {},
                                                                     "param_groups": []},
        "train_args": {"epochs": 3, "batch": 16}, "version": "8.4.190"},
        place=_ultralytics_place, ema_only=True)


def _pickled(model: nn.Module, yaml: dict, path: Path, top_class: str | None,
             head_classes: tuple[str, ...], entries: dict, *, ema: bool = False,
             place=None, ema_only: bool = False) -> Path:
    fakes: dict[str, type] = {}
    place = place or _yolov5_place(top_class, head_classes)

    def stand_in(module: nn.Module, top: bool) -> object:
        cls = type(module)
        if cls.__module__.startswith("torch.nn") and not top:
            record = cls.__new__(cls)  # torch's own class, its children replaced below
        else:
            where, name = place(cls.__name__, top)
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

    tree = stand_in(model, True)
    if ema or ema_only:
        entries = {**entries, "ema": stand_in(model, True)}
    with _importable(fakes):
        torch.save({"model": None if ema_only else tree, **entries}, path)
    return path


@contextlib.contextmanager
def _importable(fakes: dict[str, type]):
    """The stand-in classes (pickled name -> class) importable where their names say, while
    they are pickled; the modules of those names as they were afterwards."""
    names = {prefix for key in fakes for prefix in _prefixes(key.rpartition(".")[0])}
    saved = {name: sys.modules.get(name) for name in names}
    try:
        for name in names:
            sys.modules[name] = types.ModuleType(name)
        for key, cls in fakes.items():
            module, _, name = key.rpartition(".")
            setattr(sys.modules[module], name, cls)
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _prefixes(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def yolov7_tiny_per_epoch(path: Path) -> Path:
    """YOLOv7's `epoch_NNN.pt` of the tiny-scratch run's model: cfg/training/yolov7-tiny.yaml
    at nc=3, its optimizer groups as that run's train.py logged them."""
    import re

    import yaml

    from conftest import shared
    from yolodiag.build.builder import build
    from yolodiag.spec import load_spec

    cfg = shared("yamls", "yolov7", "stock", "training", "yolov7-tiny.yaml")
    log = shared("golden", "yolov7", "runs", "tiny-scratch", "train-log-excerpt.txt").read_text()
    biases, weights, other = map(int, re.search(
        r"Optimizer groups: (\d+) \.bias, (\d+) conv\.weight, (\d+) other", log).groups())
    model = build(load_spec(cfg), nc=3, device="cpu").model
    return yolov7_per_epoch(model, yaml.safe_load(cfg.read_text()), path,
                            (other, weights, biases))


def ultralytics_crafted(path: Path, marker: Path) -> Path:
    """An Ultralytics-format checkpoint (its model an `ultralytics.nn.tasks.DetectionModel`
    holding `ultralytics.nn.modules` layers, `train_args` beside it) whose pickle also calls
    os.system to create `marker`: what a poisoned yolo11n.pt looks like. The stand-in
    classes are importable only while it is saved."""
    fakes = {f"{where}.{name}": type(name, (), {"__module__": where, "__qualname__": name})
             for where, name in (("ultralytics.nn.tasks", "DetectionModel"),
                                 ("ultralytics.nn.modules.conv", "Conv"))}
    conv_class = fakes["ultralytics.nn.modules.conv.Conv"]
    model_class = fakes["ultralytics.nn.tasks.DetectionModel"]
    conv = conv_class.__new__(conv_class)
    conv.__dict__.update(_parameters=OrderedDict(), _buffers=OrderedDict(),
                         _modules=OrderedDict(), training=False)
    model = model_class.__new__(model_class)
    model.__dict__.update(_parameters=OrderedDict(), _buffers=OrderedDict(),
                          _modules=OrderedDict(conv=conv), yaml={"nc": 80},
                          names={0: "person"}, hook=_Calls(os.system, f"touch {marker}"))
    with _importable(fakes):
        torch.save({"model": model, "ema": None, "epoch": -1, "train_args": {"epochs": 3}},
                   path)
    return path
