"""Our YOLOv7 blocks against what the real YOLOv7 (a207844) built, layer by layer.

golden/yolov7/build.json records, for every stock, baseline and resnet18 YAML, each layer's
constructor arguments as parse_model logged them, its parameter count and output shape, and
the model's state dict. Every layer whose class is one of ours is rebuilt here from those
arguments alone (on the meta device, n copies in an nn.Sequential when n > 1, as parse_model
does) and must give the same state-dict keys and shapes, the same parameter count and, fed
meta tensors of its inputs' recorded shapes, the same output shape.
"""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from typing import Any

import pytest
import torch
from torch import nn

from conftest import shared
from yolodiag.build.meta import shape_only
from yolodiag.dialects.yolov7 import blocks, csp

GOLDEN = ("golden", "yolov7", "build.json")


def _ours(name: str):
    """Our class of that name (the basic blocks, or the CSP family), or None."""
    return getattr(blocks, name, None) or getattr(csp, name, None)

META = torch.device("meta")
# Layer types of the recorded models that are not blocks of ours: torch's upsampling, the
# detection heads, and the seed document's BasicBlock (resnet18/ models).
NOT_OURS = {"Upsample", "Detect", "IDetect", "IAuxDetect", "BasicBlock"}
# The module reprs that can appear in a logged argument list, and the classes they name.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (nn.LeakyReLU, nn.SiLU, nn.ReLU, nn.Identity, nn.Hardswish,
                                  nn.Mish, nn.Sigmoid, nn.Tanh, nn.ReLU6, nn.ELU, nn.GELU)}


@cache
def _golden() -> dict[str, Any]:
    return json.loads(shared(*GOLDEN).read_text())


def _cases() -> list[tuple[str, int]]:
    """(model, layer index) of every layer to rebuild; read at collection time."""
    try:
        golden = _golden()
    except pytest.skip.Exception:  # collected anyway; the placeholder skips through shared()
        return [("(golden/yolov7/build.json absent)", -1)]
    return [(name, layer["i"]) for name, model in golden.items() if not name.startswith("_")
            for layer in model["layers"] if layer["type"] not in NOT_OURS]


def _value(node: ast.expr) -> Any:
    # Literals go to ast.literal_eval; a call is only accepted as the repr of a known torch
    # activation with literal keyword arguments, e.g. LeakyReLU(negative_slope=0.1).
    if isinstance(node, ast.List):
        return [_value(item) for item in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_value(item) for item in node.elts)
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in ACTIVATIONS) or node.args:
            raise ValueError(f"not a known module repr: {ast.unparse(node)}")
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
        return ACTIVATIONS[node.func.id](**kwargs)
    return ast.literal_eval(node)


def parse_args(text: str) -> list[Any]:
    """A logged argument list (`[3, 32, 3, 2, None, 1, LeakyReLU(negative_slope=0.1)]`) as
    values, without eval. A module in it is one instance, shared by every repeat built from
    the list, as in YOLOv7 (where the YAML's string was evaluated once)."""
    tree = ast.parse(text, mode="eval").body
    if not isinstance(tree, ast.List):
        raise ValueError(f"not an argument list: {text}")
    return _value(tree)


def test_parse_args():
    args = parse_args("[3, 32, 3, 2, None, 1, LeakyReLU(negative_slope=0.1)]")
    assert args[:6] == [3, 32, 3, 2, None, 1]
    assert isinstance(args[6], nn.LeakyReLU) and args[6].negative_slope == 0.1
    assert parse_args("[1024, 512, [5, 9, 13]]") == [1024, 512, [5, 9, 13]]
    assert parse_args("[256, 256, False]") == [256, 256, False]
    assert [type(a) for a in parse_args("[SiLU(), ReLU(), Identity()]")] == [
        nn.SiLU, nn.ReLU, nn.Identity]
    for bad in ("[print(1)]", "[nn.SiLU()]", "[LeakyReLU(0.1)]", "[__import__('os')]", "3"):
        with pytest.raises(ValueError):
            parse_args(bad)


def _build(layer: dict[str, Any]) -> nn.Module:
    cls = _ours(layer["type"])
    args = parse_args(layer["args"])
    with torch.device(META):
        if layer["n"] > 1:
            return nn.Sequential(*(cls(*args) for _ in range(layer["n"])))
        return cls(*args)


def _inputs(model: dict[str, Any], layer: dict[str, Any]) -> torch.Tensor | list[torch.Tensor]:
    # -1 is the previous layer; other negatives count back from this layer, as parse_model's
    # ch[f] and the forward's y[f] do; layer 0 reads the image.
    def shape(source: int) -> list[int]:
        index = layer["i"] + source if source < 0 else source
        if index < 0:
            return [1, 3, model["img"], model["img"]]
        return model["layers"][index]["out_shape"]

    source = layer["from"]
    if isinstance(source, list):
        return [torch.empty(shape(s), device=META) for s in source]
    return torch.empty(shape(source), device=META)


@pytest.mark.parametrize(("name", "index"), _cases())
def test_layer_matches_yolov7(name, index):
    model = _golden()[name]
    layer = model["layers"][index]
    assert layer["i"] == index
    built = _build(layer)

    prefix = f"model.{index}."
    theirs = [(key[len(prefix):], shape) for key, shape in model["state_dict"].items()
              if key.startswith(prefix)]
    ours = [(key, list(tensor.shape)) for key, tensor in built.state_dict().items()]
    assert ours == theirs
    assert sum(p.numel() for p in built.parameters()) == layer["params"]
    with torch.no_grad(), shape_only(META):
        out = built.eval()(_inputs(model, layer))
    assert list(out.shape) == layer["out_shape"]


def test_every_recorded_block_type_is_ours():
    types = {layer["type"] for name, model in _golden().items() if not name.startswith("_")
             for layer in model["layers"]}
    assert {t for t in types - NOT_OURS if _ours(t) is None} == set()


def test_implicit_layers_match_the_heads_recorded_keys():
    """ImplicitA/ImplicitM are not layers of their own; IDetect and IAuxDetect hold them as
    ia.<j> (one per input) and im.<j> (one per output conv), whose keys are recorded."""
    pattern = re.compile(r"model\.\d+\.(ia|im)\.\d+\.implicit")
    seen = 0
    for name, model in _golden().items():
        if name.startswith("_"):
            continue
        for key, shape in model["state_dict"].items():
            match = pattern.fullmatch(key)
            if not match:
                continue
            cls = blocks.ImplicitA if match.group(1) == "ia" else blocks.ImplicitM
            with torch.device(META):
                built = cls(shape[1])
            assert {k: list(v.shape) for k, v in built.state_dict().items()} == {
                "implicit": shape}
            x = torch.empty(1, shape[1], 8, 8, device=META)
            assert built(x).shape == x.shape
            seen += 1
    assert seen > 0


def test_implicit_initial_values():
    torch.manual_seed(0)
    added, scaled = blocks.ImplicitA(4096), blocks.ImplicitM(4096)
    assert abs(added.implicit.mean().item()) < 0.005 and abs(added.implicit.std() - 0.02) < 0.002
    assert abs(scaled.implicit.mean().item() - 1) < 0.005
    x = torch.randn(2, 4096, 3, 3)
    torch.testing.assert_close(added(x), x + added.implicit)
    torch.testing.assert_close(scaled(x), x * scaled.implicit)


def test_repconv_forms():
    """The recorded models only use RepConv with c1 != c2 in its training form; the identity
    branch and the deploy form are checked here, their output against the branches' sum."""
    with_identity = blocks.RepConv(8, 8, 3, 1, act=False).eval()
    assert [k for k in with_identity.state_dict() if k.endswith("weight")] == [
        "rbr_identity.weight", "rbr_dense.0.weight", "rbr_dense.1.weight", "rbr_1x1.0.weight",
        "rbr_1x1.1.weight"]
    x = torch.randn(1, 8, 6, 6)
    expected = (with_identity.rbr_dense(x) + with_identity.rbr_1x1(x)
                + with_identity.rbr_identity(x))
    torch.testing.assert_close(with_identity(x), expected)
    assert blocks.RepConv(8, 8, 3, 2).rbr_identity is None

    deploy = blocks.RepConv(8, 16, 3, 2, deploy=True)
    assert {k: list(v.shape) for k, v in deploy.state_dict().items()} == {
        "rbr_reparam.weight": [16, 8, 3, 3], "rbr_reparam.bias": [16]}
    assert isinstance(deploy.act, nn.SiLU)
    assert deploy(x).shape == (1, 16, 3, 3)
    with pytest.raises(ValueError):
        blocks.RepConv(8, 8, 1)
