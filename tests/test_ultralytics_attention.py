"""Our Ultralytics attention and YOLOv10 blocks (attention.py, area_attention.py) against what
the real Ultralytics 8.4.190 built, layer by layer, and against the real classes' outputs.

golden/ultralytics/build.json records, per stock model, each layer's completed constructor
arguments, repeat count, parameter count, output shape (eval forward of zeros at 640) and the
model's state dict. Every layer of one of our classes is rebuilt from those arguments alone, as
parse_model builds it, and must give the same state-dict keys and shapes, parameter count and
output shape. Identical (type, args, n, input shape) rows across models are built once.

The live oracle (marker `ultralytics`, needs $ULTRALYTICS_PYTHON) builds the real class of each
case in one subprocess (tests/oracle/ultralytics_attention.py), and ours, loaded with its state
dict, must reproduce its eval and train outputs on a random input.
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

from conftest import ROOT, shared
from yolodiag.dialects.ultralytics import area_attention, attention, block

GOLDEN = ("golden", "ultralytics", "build.json")
OURS: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (
        attention.Attention, attention.PSABlock, attention.PSA, attention.C2PSA,
        attention.C2fPSA, attention.SCDown, attention.RepVGGDW, attention.CIB, attention.C2fCIB,
        area_attention.AAttn, area_attention.ABlock, area_attention.A2C2f)}
# parse_model's repeat_modules among ours: n is already args[2] and they are built once.
REPEAT_IN_ARGS = {"C2PSA", "C2fPSA", "C2fCIB", "A2C2f"}
# yolo12l.yaml rows as 8.4.190's parse_model completes them (scale l appends residual=True,
# mlp_ratio=1.2 to every A2C2f row) with the parameter counts it printed; build.json records
# only yolo12n/s, which get neither.
SCALE_L_ROWS = [("A2C2f", [512, 512, 4, True, 4, True, 1.2], 4272944),
                ("A2C2f", [1024, 512, 2, False, -1, True, 1.2], 2102784)]
# Blocks the recorded models do not use, or only inside another block: checked by the oracle.
EXTRA_CASES = [("C2fPSA", [128, 128, 2]), ("PSABlock", [64, 0.5, 1, False]),
               ("Attention", [128, 4, 1.0]), ("CIB", [64, 64, True, 0.5, True]),
               ("CIB", [32, 64, True, 0.5, False]), ("RepVGGDW", [48]),
               ("AAttn", [64, 2, 4]), ("ABlock", [64, 2, 1.2, 2]),
               ("A2C2f", [64, 64, 1, True, 2, True, 2.0])]
ORACLE_SCRIPT = ROOT / "tests" / "oracle" / "ultralytics_attention.py"


@cache
def _golden() -> dict[str, Any]:
    return json.loads(shared(*GOLDEN).read_text())


def _input_shapes(model: dict[str, Any], layer: dict[str, Any]) -> list[list[int]]:
    # -1 is the previous layer; other negatives count back from this layer; layer 0 reads the
    # image. Every block here takes one input.
    source = layer["from"]
    index = layer["i"] + source if source < 0 else source
    if index < 0:
        return [[1, 3, model["img"], model["img"]]]
    return [model["layers"][index]["out_shape"]]


def _distinct_layers() -> dict[str, tuple[str, int]]:
    """{case id: (model, layer index)} of the first of each identical (type, args, n, input)."""
    seen: dict[str, tuple[str, int]] = {}
    for name, model in _golden().items():
        if name.startswith("_"):
            continue
        for layer in model["layers"]:
            if layer["type"] in OURS:
                key = json.dumps([layer["type"], layer["args"], layer["n"],
                                  _input_shapes(model, layer)])
                seen.setdefault(key, (name, layer["i"]))
    return {f"{name}:{index}:{_golden()[name]['layers'][index]['type']}": (name, index)
            for name, index in seen.values()}


def _recorded_cases() -> list[Any]:
    try:
        cases = _distinct_layers()
    except pytest.skip.Exception:  # collected anyway; the test skips through shared()
        return [pytest.param("(build.json absent)", -1, id="absent")]
    return [pytest.param(name, index, id=case_id) for case_id, (name, index) in cases.items()]


def _needs_c3k(type_name: str, args: list[Any]) -> bool:
    return type_name == "A2C2f" and len(args) > 3 and not args[3]


def _skip_without_c3k(type_name: str, args: list[Any]) -> None:
    if _needs_c3k(type_name, args) and not hasattr(block, "C3k"):
        pytest.skip("A2C2f without area attention uses C3k, which the CSP blocks provide")


def _build(type_name: str, args: list[Any], n: int = 1) -> nn.Module:
    cls = OURS[type_name]
    if n > 1 and type_name not in REPEAT_IN_ARGS:
        return nn.Sequential(*(cls(*args) for _ in range(n)))
    return cls(*args)


def _parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("name", "index"), _recorded_cases())
def test_layer_matches_the_recorded_build(name, index):
    model = _golden()[name]
    layer = model["layers"][index]
    _skip_without_c3k(layer["type"], layer["args"])
    built = _build(layer["type"], layer["args"], layer["n"])

    prefix = f"model.{index}."
    theirs = [(key[len(prefix):], shape) for key, shape in model["state_dict"].items()
              if key.startswith(prefix)]
    assert [(key, list(value.shape)) for key, value in built.state_dict().items()] == theirs
    assert _parameters(built) == layer["params"]
    with torch.no_grad():
        out = built.eval()(torch.zeros(_input_shapes(model, layer)[0]))
    assert list(out.shape) == layer["out_shape"]


@pytest.mark.parametrize(("type_name", "args", "params"), SCALE_L_ROWS)
def test_a2c2f_scale_l_rows_build_residual_blocks(type_name, args, params):
    _skip_without_c3k(type_name, args)
    built = _build(type_name, args)
    assert _parameters(built) == params
    assert (built.gamma is not None) == args[3]
    if built.gamma is not None:
        assert torch.equal(built.gamma.detach(), torch.full((args[1],), 0.01))
        assert built.m[0][0].mlp[0].conv.out_channels == int(args[1] // 2 * 1.2)


def test_area_attention_attends_within_each_strip_only():
    """With the positional term zeroed, area attention over 4 strips of rows is the same as
    attention over each strip on its own: positions never see another strip."""
    torch.manual_seed(0)
    striped = area_attention.AAttn(64, 2, area=4).eval()
    whole = area_attention.AAttn(64, 2, area=1).eval()
    whole.load_state_dict(striped.state_dict())
    for layer in (striped, whole):
        nn.init.zeros_(layer.pe.bn.weight)
        nn.init.zeros_(layer.pe.bn.bias)
    x = torch.randn(2, 64, 8, 6)
    with torch.no_grad():
        expected = torch.cat([whole(strip) for strip in x.split(2, dim=2)], dim=2)
        torch.testing.assert_close(striped(x), expected)
        assert not torch.allclose(whole(x), expected, atol=1e-3)


def test_attention_normalises_over_attended_positions():
    """Queries equal at every position give every position the same output: the mean of the
    values weighted by softmax over positions of scale * query . key."""
    torch.manual_seed(0)
    layer = attention.Attention(32, num_heads=2, attn_ratio=0.5).eval()
    query_rows = [row for head in range(2) for row in range(head * 32, head * 32 + 8)]
    with torch.no_grad():
        layer.qkv.conv.weight[query_rows] = 0  # queries come from the BatchNorm shift alone
        layer.qkv.bn.bias[query_rows] = torch.linspace(-1, 1, len(query_rows))
        for conv in (layer.pe, layer.proj):
            nn.init.zeros_(conv.bn.weight)
            nn.init.zeros_(conv.bn.bias)
        layer.proj.bn.weight.fill_(1)
        layer.proj.conv.weight.copy_(torch.eye(32).view(32, 32, 1, 1))
        layer.proj.bn.running_var.fill_(1 - layer.proj.bn.eps)
        x = torch.randn(1, 32, 4, 5)
        q, k, v = layer.qkv(x).view(1, 2, 32, 20).split((8, 8, 16), dim=2)
        weights = torch.einsum("hc,hcj->hj", q[0, :, :, 0] * 8 ** -0.5, k[0]).softmax(-1)
        expected = torch.einsum("hj,hcj->hc", weights, v[0]).reshape(32, 1, 1)
        torch.testing.assert_close(layer(x)[0], expected.expand(32, 4, 5))


def test_blocks_refuse_widths_they_cannot_keep():
    for cls in (attention.PSA, attention.C2PSA, attention.C2fPSA):
        with pytest.raises(ValueError, match="c1=64 and c2=128"):
            cls(64, 128)
    with pytest.raises(ValueError, match="divisible by 32"):
        area_attention.A2C2f(64, 48)


def test_repvggdw_keeps_silu_under_another_default_activation():
    from yolodiag.dialects.ultralytics.conv import default_activation

    with default_activation(nn.ReLU):
        mixer = attention.RepVGGDW(16)
        cib = attention.CIB(16, 16)
    assert isinstance(mixer.act, nn.SiLU) and isinstance(mixer.conv.act, nn.Identity)
    assert isinstance(cib.cv1[0].act, nn.ReLU)


# --- live oracle ------------------------------------------------------------------------------

def _oracle_cases() -> list[dict[str, Any]]:
    cases = [{"id": case_id, "type": _golden()[name]["layers"][index]["type"],
              "args": _golden()[name]["layers"][index]["args"],
              "n": _golden()[name]["layers"][index]["n"]}
             for case_id, (name, index) in _distinct_layers().items()]
    extra = [(t, a) for t, a, _ in SCALE_L_ROWS] + EXTRA_CASES
    cases += [{"id": f"extra:{t}:{json.dumps(a)}", "type": t, "args": a, "n": 1}
              for t, a in extra]
    for case in cases:
        case["repeat_in_args"] = case["type"] in REPEAT_IN_ARGS
    return [case for case in cases if not (_needs_c3k(case["type"], case["args"])
                                           and not hasattr(block, "C3k"))]


def _oracle_input(case: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
    # Batch 2 and a non-square 8x12 map (96 positions, divisible by every recorded area) so
    # the batch and strip reshapes are exercised; channels are the block's first argument.
    return torch.randn(2, case["args"][0], 8, 12, generator=generator)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    python = os.environ.get("ULTRALYTICS_PYTHON")
    if not python:
        pytest.skip("needs $ULTRALYTICS_PYTHON (an interpreter with ultralytics==8.4.190)")
    folder: Path = tmp_path_factory.mktemp("ultralytics_attention")
    cases = _oracle_cases()
    generator = torch.Generator().manual_seed(1)
    inputs = {case["id"]: _oracle_input(case, generator) for case in cases}
    torch.save({"cases": cases, "inputs": inputs}, folder / "request.pt")
    done = subprocess.run([python, str(ORACLE_SCRIPT), str(folder / "request.pt"),
                           str(folder / "out.pt")], capture_output=True, text=True, timeout=600)
    if done.returncode:
        pytest.fail(f"the oracle script failed:\n{done.stderr[-3000:]}")
    return cases, inputs, torch.load(folder / "out.pt", weights_only=True)


@pytest.mark.ultralytics
def test_outputs_match_the_real_blocks(oracle):
    cases, inputs, theirs = oracle
    worst = 0.0
    for case in cases:
        ours = _build(case["type"], case["args"], case["n"])
        ours.load_state_dict(theirs[case["id"]]["state"], strict=True)
        with torch.no_grad():
            for mode in ("eval", "train"):
                out = ours.train(mode == "train")(inputs[case["id"]])
                expected = theirs[case["id"]][mode]
                assert out.shape == expected.shape, case["id"]
                difference = (out - expected).abs().max().item()
                assert difference <= 1e-5, (case["id"], mode, difference)
                worst = max(worst, difference)
    assert len(cases) >= 40 and worst <= 1e-5


@pytest.mark.ultralytics
def test_seeded_builds_draw_the_real_initial_weights(oracle):
    """Submodules are created in Ultralytics' order (and ABlock re-initialises its kernels the
    same way), so the same seed gives the same convolution weights. The oracle drew BatchNorm
    terms and gamma afterwards: those are left out."""
    cases, _, theirs = oracle
    for case in cases:
        torch.manual_seed(0)
        ours = _build(case["type"], case["args"], case["n"])
        drawn_later = {f"{name}.{key}".lstrip(".") for name, layer in ours.named_modules()
                       if isinstance(layer, nn.BatchNorm2d) for key in layer.state_dict()}
        drawn_later |= {key for key in ours.state_dict() if key.split(".")[-1] == "gamma"}
        expected = theirs[case["id"]]["state"]
        for key, value in ours.state_dict().items():
            if key not in drawn_later:
                assert torch.equal(value, expected[key]), (case["id"], key)
