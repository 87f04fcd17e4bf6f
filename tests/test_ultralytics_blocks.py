"""Our Ultralytics bottleneck, CSP and pooling blocks against the real Ultralytics 8.4.190.

golden/ultralytics/build.json records every layer of 54 models as parse_model built it: its
constructor arguments after channel completion, parameter count, output shape at 640 and
state-dict keys with shapes. Every layer whose class is one of these blocks is rebuilt here
from those arguments alone, as parse_model builds it (a repeat module takes n in its arguments;
any other class with n > 1 becomes an nn.Sequential of n copies with the same arguments), and
must give the same keys and shapes in the same order, the same parameter count and, fed zeros
of its input's recorded shape in eval mode, the recorded output shape.

Tests marked `ultralytics` compare numbers with the real classes, run in $ULTRALYTICS_PYTHON
by tests/oracle/ultralytics_modules.py (one interpreter for all cases): its state dict
(BatchNorm statistics perturbed) loads into ours strictly, and eval and train outputs agree.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import ROOT, shared
from yolodiag.dialects.ultralytics import block

GOLDEN = ("golden", "ultralytics", "build.json")
ORACLE = ROOT / "tests" / "oracle" / "ultralytics_modules.py"
OURS: dict[str, type[nn.Module]] = {cls.__name__: cls for cls in (
    block.Bottleneck, block.C2f, block.C1, block.C2, block.C3, block.C3x, block.C3k,
    block.C3k2, block.GhostBottleneck, block.C3Ghost, block.RepC3, block.BottleneckCSP,
    block.SPP, block.SPPF, block.ResNetBlock, block.ResNetLayer)}
# C3k2's attention variant holds a PSABlock, which yolodiag's attention module provides.
HAS_ATTENTION = importlib.util.find_spec("yolodiag.dialects.ultralytics.attention") is not None
# Arguments for the classes and options no stock YAML uses, checked against the oracle only.
UNRECORDED: list[tuple[str, list[Any], int]] = [
    ("C1", [32, 48, 2], 1), ("C3x", [32, 32, 2], 1), ("C3x", [32, 64, 1, False], 1),
    ("RepC3", [32, 64, 3], 1), ("RepC3", [32, 32, 2, 1.0], 1), ("RepC3", [32, 64, 1, 0.5], 1),
    ("BottleneckCSP", [32, 64, 2], 1), ("BottleneckCSP", [32, 32, 1, False], 1),
    ("GhostBottleneck", [32, 64, 3, 2], 1), ("GhostBottleneck", [32, 32, 5, 1], 2),
    ("C3k", [32, 32, 2, True, 1, 0.5, 5], 1), ("C3k2", [32, 64, 2, True, 0.5, False, 2], 1),
    ("C3k2", [32, 64, 1, False, 0.5, False, 1, False], 1), ("C2", [32, 32, 2, True, 2], 1),
    ("SPP", [32, 48, [3, 7]], 1), ("SPPF", [32, 32, 3, 2, True], 1),
    ("SPPF", [32, 48, 5, 3, True], 1), ("ResNetBlock", [32, 16, 2], 1),
    ("ResNetBlock", [64, 16, 1], 1), ("ResNetLayer", [3, 32, 1, True, 1], 1),
    ("ResNetLayer", [32, 16, 2, False, 3], 1), ("ResNetLayer", [64, 32, 1, False, 1, 2], 1)]


@cache
def _golden() -> dict[str, Any]:
    return json.loads(shared(*GOLDEN).read_text())


def _models() -> dict[str, Any]:
    return {name: model for name, model in _golden().items() if not name.startswith("_")}


def _input_shape(model: dict[str, Any], layer: dict[str, Any]) -> list[int]:
    # -1 is the previous layer (other negatives count back from this one); before layer 0 is
    # the image.
    index = layer["i"] + layer["from"] if layer["from"] < 0 else layer["from"]
    return model["layers"][index]["out_shape"] if index >= 0 else [1, 3, model["img"],
                                                                  model["img"]]


def _recorded_cases() -> list[tuple[str, int]]:
    """(model, layer index) of the first layer of every distinct (type, args, n, input shape)
    among our classes; read at collection time."""
    try:
        models = _models()
    except pytest.skip.Exception:  # collected anyway; the placeholder skips through shared()
        return [("(golden/ultralytics/build.json absent)", -1)]
    seen: dict[str, tuple[str, int]] = {}
    for name, model in models.items():
        for layer in model["layers"]:
            if layer["type"] in OURS:
                key = json.dumps([layer["type"], layer["args"], layer["n"],
                                  _input_shape(model, layer)])
                seen.setdefault(key, (name, layer["i"]))
    return list(seen.values())


@cache
def _repeat_modules() -> frozenset[str]:
    return frozenset(_golden()["_parse_model_sets"]["repeat_modules"])


def _needs_attention(kind: str, args: list[Any]) -> bool:
    return kind == "C3k2" and len(args) > 5 and bool(args[5])


def _build(kind: str, args: list[Any], n: int) -> nn.Module:
    """Our module for a row, as the table's rule and parse_model build it."""
    if _needs_attention(kind, args) and not HAS_ATTENTION:
        pytest.skip("C3k2 with attn needs PSABlock from yolodiag/dialects/ultralytics/attention.py")
    cls = OURS[kind]
    # parse_model's post-construction SPPF tweak, passed as the keyword the table passes.
    options = {"cv1_activated": len(args) <= 3} if cls is block.SPPF else {}
    copies = 1 if kind in _repeat_modules() else n
    modules = [cls(*args, **options) for _ in range(copies)]
    return modules[0] if copies == 1 else nn.Sequential(*modules)


@pytest.mark.parametrize(("name", "index"), _recorded_cases())
def test_block_matches_the_recorded_ultralytics_layer(name, index):
    model = _models()[name]
    layer = model["layers"][index]
    with torch.device("meta"):  # shapes only: the values are the oracle test's business
        built = _build(layer["type"], layer["args"], layer["n"])

    prefix = f"model.{index}."
    theirs = [(key[len(prefix):], shape) for key, shape in model["state_dict"].items()
              if key.startswith(prefix)]
    assert [(key, list(value.shape)) for key, value in built.state_dict().items()] == theirs
    assert sum(p.numel() for p in built.parameters()) == layer["params"]
    with torch.no_grad(), torch.device("meta"):
        out = built.eval()(torch.zeros(_input_shape(model, layer)))
    assert list(out.shape) == layer["out_shape"]


def test_sppf_cv1_is_activated_only_for_rows_of_three_arguments():
    legacy = _build("SPPF", [64, 64, 5], 1)
    yolo26 = _build("SPPF", [64, 64, 5, 3, True], 1)
    assert isinstance(legacy.cv1.act, nn.SiLU) and isinstance(legacy.cv2.act, nn.SiLU)
    assert isinstance(yolo26.cv1.act, nn.Identity) and isinstance(yolo26.cv2.act, nn.SiLU)
    assert yolo26.add and not block.SPPF(64, 32, 5, 3, True).add


def test_sppf_of_three_5x5_pools_equals_spp_of_5_9_13():
    torch.manual_seed(0)
    fast, pyramid = block.SPPF(16, 8, cv1_activated=True).eval(), block.SPP(16, 8).eval()
    pyramid.load_state_dict(fast.state_dict())
    x = torch.randn(1, 16, 20, 20)
    torch.testing.assert_close(fast(x), pyramid(x))


def test_c3k2_inner_blocks_follow_c3k():
    assert [type(m) for m in block.C3k2(64, 64, 2, True).m] == [block.C3k, block.C3k]
    plain = block.C3k2(64, 64, 1, False, 0.25)
    assert type(plain.m[0]) is block.Bottleneck and plain.m[0].cv1.conv.out_channels == 8


def test_resnet_layer_widths_strides_and_parameters():
    stage = block.ResNetLayer(64, 64, 2, False, 2)
    # Block 1 (64 -> 256, stride 2, projected): 4224 + 36992 + 16896 + 16896; block 2
    # (256 -> 256, identity): 16512 + 36992 + 16896.
    assert sum(p.numel() for p in stage.parameters()) == 75008 + 70400
    assert isinstance(stage.layer[1].shortcut, nn.Identity)
    assert stage.eval()(torch.zeros(1, 64, 32, 32)).shape == (1, 256, 16, 16)
    stem = block.ResNetLayer(3, 64, 1, True)
    assert stem.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 64, 16, 16)


def _oracle_cases() -> list[dict[str, Any]]:
    """One case per distinct recorded (type, arguments after the channels, n up to 2, c1 == c2),
    the one with the fewest parameters, plus the unrecorded ones; inputs 2 x c1 x 16 x 16."""
    smallest: dict[str, tuple[int, str, list[Any], int]] = {}
    for model in _models().values():
        for layer in model["layers"]:
            kind, args = layer["type"], layer["args"]
            if kind in OURS:
                key = json.dumps([kind, args[2:], min(layer["n"], 2), args[0] == args[1]])
                row = (layer["params"], kind, args, min(layer["n"], 2))
                if key not in smallest or row[0] < smallest[key][0]:
                    smallest[key] = row
    rows = [(kind, args, n) for _, kind, args, n in smallest.values()] + UNRECORDED
    return [{"id": f"{kind}{json.dumps(args)}x{n}", "type": kind, "args": args,
             "copies": 1 if kind in _repeat_modules() else n, "input": [2, args[0], 16, 16],
             "cv1_activated": kind == "SPPF" and len(args) <= 3, "n": n}
            for kind, args, n in rows]


@pytest.fixture(scope="module")
def oracle(tmp_path_factory) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    python = os.environ.get("ULTRALYTICS_PYTHON")
    if not python:
        pytest.skip("needs $ULTRALYTICS_PYTHON (an interpreter with ultralytics==8.4.190)")
    folder = tmp_path_factory.mktemp("ultralytics_blocks")
    cases = _oracle_cases()
    (folder / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run([python, str(ORACLE), "cases.json", "out.pt"], cwd=folder,
                          env={**os.environ, "YOLO_OFFLINE": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return cases, torch.load(Path(folder) / "out.pt", weights_only=True)


def _ours_for(case: dict[str, Any]) -> nn.Module:
    torch.manual_seed(0)
    return _build(case["type"], case["args"], case["n"])


@pytest.mark.ultralytics
def test_blocks_compute_what_ultralytics_computes(oracle):
    cases, results = oracle
    worst, compared = 0.0, 0
    for case in cases:
        if _needs_attention(case["type"], case["args"]) and not HAS_ATTENTION:
            continue
        theirs = results[case["id"]]
        ours = _ours_for(case)
        ours.load_state_dict(theirs["state"], strict=True)
        with torch.no_grad():
            for mode in ("eval", "train"):
                out = ours.train(mode == "train")(theirs["input"])
                difference = (out - theirs[mode]).abs().max().item()
                assert difference <= 1e-5, (case["id"], mode, difference)
                worst = max(worst, difference)
        compared += 1
    assert compared >= len(cases) - 1, "only the attention case may be left out"
    print(f"{compared} cases, eval and train, max abs difference {worst:.2e}")


@pytest.mark.ultralytics
def test_seeded_builds_draw_ultralytics_initial_weights(oracle):
    """Convolution weights are drawn in Ultralytics' order (BatchNorms were perturbed by the
    oracle after construction, so only the rest is compared)."""
    cases, results = oracle
    for case in cases:
        if _needs_attention(case["type"], case["args"]):
            continue  # PSABlock's construction order is the attention module's concern
        ours = _ours_for(case)
        norms = tuple(f"{name}." for name, module in ours.named_modules()
                      if isinstance(module, nn.BatchNorm2d))
        for key, value in ours.state_dict().items():
            if not key.startswith(norms):
                assert torch.equal(value, results[case["id"]]["state"][key]), (case["id"], key)
