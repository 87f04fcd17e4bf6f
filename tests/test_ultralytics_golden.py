"""The Ultralytics dialect against the real ultralytics 8.4.190 (tests/shared/golden/ultralytics,
recorded with it): for each of the 54 recorded model names, every layer's type, from, repeat
count, parameters, output shape and stride at 640, the totals, the head's strides, reg_max and
class-branch layout, every state-dict key with its shape, and GFLOPs within 1%.

A name is resolved as Ultralytics resolves it (`yolo11n.yaml` is `yolo11.yaml` at scale n), from
the stock YAMLs (comments stripped) and the seed's recipes in tests/shared.
"""

from __future__ import annotations

import json
from functools import cache

import pytest

from conftest import shared
from yolodiag.build.builder import build
from yolodiag.spec import load_spec
from yolodiag.trace import trace


@cache
def recorded() -> dict:
    return json.loads(shared("golden", "ultralytics", "build.json").read_text())


def _names() -> list[str]:
    try:
        return [k for k in recorded() if not k.startswith("_")]
    except BaseException:  # no golden copy: the parametrised tests skip through shared()
        return ["yolo11n.yaml"]


def model_path(name: str):
    """Where a recorded name points: the recipes folder for the seed's, else the stock one."""
    folder = "resnet18" if "resnet18" in name else "stock"
    return shared("yamls", "ultralytics", folder) / name


@cache
def built_and_traced(name: str):
    spec = load_spec(model_path(name))
    built = build(spec, device="meta")
    return built, trace(built, [(640, 640)]).sizes[0]


def _golden_layers_differ(name: str) -> list[str]:
    real = recorded()[name]
    built, size = built_and_traced(name)
    wrong = []
    if len(built.layers) != len(real["layers"]):
        return [f"{len(built.layers)} layers, real {len(real['layers'])}"]
    head = built.head_index
    for ours, theirs in zip(built.layers, real["layers"]):
        i = ours.index
        ours_from = list(ours.from_) if isinstance(ours.from_, tuple) else ours.from_
        traced = size.layer(i)
        pairs = {"type": (ours.type, theirs["type"]), "from": (ours_from, theirs["from"]),
                 "n": (ours.number, theirs["n"]), "params": (ours.params, theirs["params"])}
        if i != head:
            pairs["out_shape"] = (traced.out_shape if traced else None, theirs["out_shape"])
            pairs["stride"] = (traced.stride if traced else None, theirs["stride"])
        wrong += [f"layer {i} {key}: ours {a}, real {b}" for key, (a, b) in pairs.items()
                  if a != b]
    return wrong


@pytest.mark.parametrize("name", _names())
def test_every_layer_equals_the_real_build(name):
    assert _golden_layers_differ(name) == []


@pytest.mark.parametrize("name", _names())
def test_totals_head_and_state_dict_equal_the_real_build(name):
    real = recorded()[name]
    built, size = built_and_traced(name)
    assert built.params == real["params"]
    assert list(built.stride) == real["detect"]["stride"] == real["model_stride"]
    head = built.dialect.model.head_facts(built)
    assert (head["reg_max"], head["legacy"], head["outputs_per_cell"], head["one2one_branch"]) \
        == (real["detect"]["reg_max"], real["detect"]["legacy"], real["detect"]["no"],
            real["detect"]["one2one_branch"])
    assert built.spec.scale == (real["scale_used"] or real["scale_from_name"])
    ours = {k: list(v.shape) for k, v in built.model.state_dict().items()}
    assert ours == real["state_dict"]


@pytest.mark.parametrize("name", _names())
def test_gflops_within_one_percent(name):
    real = recorded()[name]["model_info"]["GFLOPs"]
    _, size = built_and_traced(name)
    assert size.gflops == pytest.approx(real, rel=0.01)
