"""Our builder against figures recorded from the real YOLOv5 v7.0 (../shared/golden)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import NUMERICS, SHARED, recorded_numerics, shared
from yolodiag.build.builder import build
from yolodiag.spec import load_spec
from yolodiag.trace import trace

GOLDEN_BUILD = "golden/yolov5-v7.0-build.json"


def _golden_names() -> list[str]:
    path = SHARED / GOLDEN_BUILD
    if not path.exists():  # collected anyway; each case then skips through shared()
        return ["(golden build file absent)"]
    return [name for name in json.loads(path.read_text()) if not name.startswith("_")]


@pytest.fixture(scope="module")
def golden_build() -> dict:
    return json.loads(shared(GOLDEN_BUILD).read_text())


def _yaml_path(name: str) -> Path:
    return shared("yamls", "resnet18" if "resnet18" in name else "stock", name)


@pytest.mark.parametrize("name", _golden_names())
def test_build_matches_yolov5_v7(name, golden_build):
    golden = golden_build[name]
    built = build(load_spec(_yaml_path(name)), device="meta")
    size = trace(built, [(golden["img"], golden["img"])]).sizes[0]
    ours = [{"i": r.index, "from": list(r.from_) if isinstance(r.from_, tuple) else r.from_,
             "type": r.type, "params": r.params, "out_shape": t.out_shape, "stride": t.stride}
            for r, t in zip(built.layers, size.layers)]
    assert ours == golden["layers"]
    assert built.params == golden["params"]
    assert list(built.stride) == golden["detect_strides"]
    assert built.anchors.tolist() == golden["anchors_grid_units"]
    assert (built.nc, built.model.head.na, built.model.head.nl) == (golden["nc"], golden["na"],
                                                                    golden["nl"])
    state = {k: list(v.shape) for k, v in built.model.state_dict().items()}
    assert list(state.items()) == list(golden["state_dict"].items())


@pytest.fixture(scope="module", params=NUMERICS)
def numerics(request):
    return recorded_numerics(request.param)


def test_recorded_state_dict_loads_strictly_with_same_strides_and_anchors(numerics):
    recorded, built = numerics
    assert torch.equal(torch.tensor(built.stride), recorded["detect_stride"])
    assert torch.equal(built.anchors, recorded["detect_anchors_grid_units"])


def test_eval_and_train_outputs_match_yolov5_within_1e_4(numerics):
    recorded, built = numerics
    model = built.model
    with torch.no_grad():
        # Eval first: a train-mode forward updates the BatchNorm running statistics.
        model.eval()
        decoded, raw = model(recorded["input"])
        model.train()
        train_raw = model(recorded["input"])
    torch.testing.assert_close(decoded, recorded["eval_output"], atol=1e-4, rtol=0)
    assert len(train_raw) == len(recorded["train_outputs"])
    for ours, theirs in zip(train_raw, recorded["train_outputs"]):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_bundled_example_builds_exactly_the_recorded_seed_model(golden_build):
    from yolodiag.commands import BUNDLED_MODEL

    golden = golden_build["yolov5s-resnet18.yaml"]
    built = build(load_spec(BUNDLED_MODEL), device="meta")
    assert built.params == golden["params"]
    assert list(built.stride) == golden["detect_strides"]
    state = {k: list(v.shape) for k, v in built.model.state_dict().items()}
    assert state == golden["state_dict"]
