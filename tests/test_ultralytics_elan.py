"""Our YOLOv9-family blocks (dialects/ultralytics/elan.py) against Ultralytics 8.4.190.

golden/ultralytics/build.json records every layer of the stock models as the real parse_model
built it: constructor args after channel completion, parameter count, output shape at 640 and
the state-dict keys and shapes. Every layer whose type is one of ours is rebuilt here from its
args alone (n copies in an nn.Sequential when n > 1, none of these blocks takes its repeats as
an argument) and must give the same keys and shapes in the same order, the same parameter
count and, run in eval mode on zeros of its inputs' recorded shapes, the same output shape.

Live (marker `ultralytics`, needs $ULTRALYTICS_PYTHON): one subprocess builds each distinct
block, and some argument forms the stock models do not use, with the real classes
(tests/oracle/ultralytics_elan.py); ours load its state dict strictly and must give the same
outputs in eval and train mode and the same BatchNorm statistics after the train step.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import shared
from yolodiag.dialects.ultralytics import elan

GOLDEN = ("golden", "ultralytics", "build.json")
ORACLE = Path(__file__).parent / "oracle" / "ultralytics_elan.py"
OURS: dict[str, type[nn.Module]] = {cls.__name__: cls for cls in (
    elan.RepNCSPELAN4, elan.ELAN1, elan.AConv, elan.ADown, elan.SPPELAN, elan.CBLinear,
    elan.CBFuse)}
# What else the recorded yolov9 models are made of: conv.py's layers, torch's, the head.
YOLOV9_OTHERS = {"Conv", "Concat", "Upsample", "Identity", "Detect"}
TOLERANCE = 1e-5  # max abs difference to the real block's output
Shapes = Any  # a shape (list of ints), or a list of Shapes


@cache
def _golden() -> dict[str, Any]:
    return json.loads(shared(*GOLDEN).read_text())


def _models() -> dict[str, Any]:
    return {name: model for name, model in _golden().items() if not name.startswith("_")}


def _input_shapes(model: dict[str, Any], layer: dict[str, Any]) -> Shapes:
    # -1 is the previous layer (negatives count back from this one); before layer 0, the image.
    def recorded(source: int) -> Shapes:
        index = layer["i"] + source if source < 0 else source
        return model["layers"][index]["out_shape"] if index >= 0 else [1, 3, 640, 640]

    source = layer["from"]
    return [recorded(s) for s in source] if isinstance(source, list) else recorded(source)


def _distinct_layers() -> list[tuple[str, int]]:
    """(model, layer index) of the first layer of each distinct (type, args, n, input shapes)
    among our types; read at collection time."""
    try:
        models = _models()
    except pytest.skip.Exception:  # collected anyway; the placeholder skips through shared()
        return [("(golden/ultralytics/build.json absent)", -1)]
    seen: dict[str, tuple[str, int]] = {}
    for name, model in models.items():
        for layer in model["layers"]:
            if layer["type"] in OURS:
                key = json.dumps([layer["type"], layer["args"], layer["n"],
                                  _input_shapes(model, layer)])
                seen.setdefault(key, (name, layer["i"]))
    return list(seen.values())


def _build(type_name: str, args: list[Any], n: int = 1) -> nn.Module:
    cls = OURS.get(type_name) or getattr(elan, type_name)
    if n > 1:
        return nn.Sequential(*(cls(*args) for _ in range(n)))
    return cls(*args)


def _is_shape(shapes: Shapes) -> bool:
    return all(isinstance(size, int) for size in shapes)


def _zeros(shapes: Shapes):
    return torch.zeros(shapes) if _is_shape(shapes) else [_zeros(part) for part in shapes]


def _shapes_of(value) -> Shapes:
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    return [_shapes_of(part) for part in value]


@pytest.mark.parametrize(("name", "index"), _distinct_layers())
def test_recorded_layer_matches_ultralytics(name, index):
    model = _models()[name]
    layer = model["layers"][index]
    assert layer["i"] == index
    built = _build(layer["type"], layer["args"], layer["n"])

    prefix = f"model.{index}."
    theirs = [(key[len(prefix):], shape) for key, shape in model["state_dict"].items()
              if key.startswith(prefix)]
    assert [(key, list(tensor.shape)) for key, tensor in built.state_dict().items()] == theirs
    assert sum(p.numel() for p in built.parameters()) == layer["params"]
    with torch.no_grad():
        out = built.eval()(_zeros(_input_shapes(model, layer)))
    assert _shapes_of(out) == layer["out_shape"]


def test_yolov9_models_need_no_other_blocks():
    used = {layer["type"] for name, model in _models().items() if name.startswith("yolov9")
            for layer in model["layers"]}
    assert used - YOLOV9_OTHERS == set(OURS)


def test_cbfuse_adds_the_chosen_part_of_each_source_resized_to_the_target():
    coarse = (torch.arange(4.0).view(1, 1, 2, 2), torch.full((1, 2, 2, 2), 100.0))
    fine = (torch.ones(1, 1, 8, 8), torch.full((1, 1, 8, 8), 7.0))
    target = torch.full((1, 1, 4, 4), 0.5)
    fused = elan.CBFuse([0, 1])([coarse, fine, target])
    nearest = torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    torch.testing.assert_close(fused[0, 0], nearest + 7.0 + 0.5)


def test_repbottleneck_first_conv_is_a_repconv():
    bottleneck = elan.RepBottleneck(8, 8)
    assert [k for k in bottleneck.state_dict() if k.endswith("conv.weight")] == [
        "cv1.conv1.conv.weight", "cv1.conv2.conv.weight", "cv2.conv.weight"]
    assert bottleneck.add and not elan.RepBottleneck(8, 16).add


# Forms the stock models do not use: the inner blocks on their own, shortcuts and groups,
# other kernels, strides and repeat counts.
EXTRA_LIVE_CASES = [
    ("RepBottleneck", [16, 16]), ("RepBottleneck", [16, 24, False]),
    ("RepBottleneck", [16, 16, True, 2, [3, 3], 0.5]),
    ("RepCSP", [16, 32, 2]), ("RepCSP", [16, 16, 1, False, 1, 0.25]),
    ("RepNCSPELAN4", [16, 32, 16, 8]), ("RepNCSPELAN4", [24, 16, 32, 8, 3]),
    ("ELAN1", [16, 24, 16, 8]), ("SPPELAN", [32, 16, 8, 3]), ("CBLinear", [16, [8, 4], 3, 2]),
    ("ADown", [16, 8]), ("AConv", [16, 24]),
]
LIVE_SIDE = 7  # odd, so the blur's trim and the stride-2 rounding both show


def _live_cases() -> list[dict[str, Any]]:
    """Each distinct recorded (type, args) and the extra forms, on small random inputs: batch 2
    at 7x7, or for CBFuse its recorded input shapes with a tenth of the height and width."""
    cases: dict[str, dict[str, Any]] = {}

    def add(type_name: str, args: list[Any], inputs: Shapes) -> None:
        key = json.dumps([type_name, args, inputs])
        cases.setdefault(key, {"id": f"{type_name}{args}", "type": type_name, "args": args,
                               "inputs": inputs})

    def smaller(shapes: Shapes) -> Shapes:
        if _is_shape(shapes):
            return [2, shapes[1], *(side // 10 for side in shapes[2:])]
        return [smaller(part) for part in shapes]

    for name, index in _distinct_layers():
        if index < 0:  # no golden file: the extra forms only
            continue
        model = _models()[name]
        layer = model["layers"][index]
        if layer["type"] == "CBFuse":
            add("CBFuse", layer["args"], smaller(_input_shapes(model, layer)))
        else:
            add(layer["type"], layer["args"], [2, layer["args"][0], LIVE_SIDE, LIVE_SIDE])
    for type_name, args in EXTRA_LIVE_CASES:
        add(type_name, args, [2, args[0], LIVE_SIDE, LIVE_SIDE])
    return list(cases.values())


def _ultralytics_python() -> str:
    python = os.environ.get("ULTRALYTICS_PYTHON")
    if not python:
        pytest.skip("set $ULTRALYTICS_PYTHON to an interpreter with ultralytics==8.4.190")
    probe = subprocess.run([python, "-c", "import ultralytics"], capture_output=True,
                           env={**os.environ, "YOLO_OFFLINE": "1"})
    if probe.returncode != 0:
        pytest.skip(f"$ULTRALYTICS_PYTHON ({python}) cannot import ultralytics")
    return python


@pytest.fixture(scope="module")
def real_blocks(tmp_path_factory) -> dict[str, Any]:
    """What the real classes gave for every live case, by case id (one subprocess)."""
    python = _ultralytics_python()
    folder = tmp_path_factory.mktemp("ultralytics_elan")
    cases, out = folder / "cases.json", folder / "out.pt"
    cases.write_text(json.dumps(_live_cases()))
    subprocess.run([python, "-W", "ignore", str(ORACLE), str(cases), str(out)], check=True,
                   env={**os.environ, "YOLO_OFFLINE": "1"})
    return torch.load(out, weights_only=True)


def _max_difference(ours, theirs) -> float:
    if isinstance(theirs, torch.Tensor):
        assert ours.shape == theirs.shape
        return (ours.float() - theirs.float()).abs().max().item()
    assert len(ours) == len(theirs)
    return max((_max_difference(a, b) for a, b in zip(ours, theirs)), default=0.0)


@pytest.mark.ultralytics
@pytest.mark.parametrize("case", _live_cases(), ids=lambda case: case["id"])
def test_block_computes_what_ultralytics_computes(case, real_blocks):
    theirs = real_blocks[case["id"]]
    ours = _build(case["type"], case["args"])
    ours.load_state_dict(theirs["state"], strict=True)
    with torch.no_grad():
        assert _max_difference(ours.eval()(theirs["input"]), theirs["eval"]) <= TOLERANCE
        assert _max_difference(ours.train()(theirs["input"]), theirs["train"]) <= TOLERANCE
    after = theirs["buffers_after_train"]
    assert _max_difference([ours.state_dict()[key] for key in after], list(after.values())) \
        <= TOLERANCE
