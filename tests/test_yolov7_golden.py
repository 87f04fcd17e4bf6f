"""Our YOLOv7 dialect against what the real YOLOv7 (commit a207844) builds from its 26 stock YAMLs
and the seed's two recipes (../shared/golden/yolov7/build.json): every layer's type, from,
repeat count, parameters, output shape and stride, the totals, the head's strides and anchors,
and the state-dict keys and shapes in order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, shared
from yolodiag.build.builder import build
from yolodiag.spec import load_spec
from yolodiag.trace import trace

GOLDEN = ("golden", "yolov7", "build.json")


def _names() -> list[str]:
    path = SHARED.joinpath(*GOLDEN)
    if not path.exists():  # collected anyway; each case then skips through shared()
        return ["(golden build file absent)"]
    return [name for name in json.loads(path.read_text()) if not name.startswith("_")]


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(shared(*GOLDEN).read_text())


def _yaml(name: str) -> Path:
    folder, file = name.split("/")
    return (shared("yamls", "yolov7", "resnet18", file) if folder == "resnet18" else
            shared("yamls", "yolov7", "stock", folder, file))


@pytest.mark.parametrize("name", _names())
def test_build_matches_yolov7(name, golden):
    recorded = golden[name]
    spec = load_spec(_yaml(name), dialect="yolov7")
    built = build(spec, device="meta")
    size = trace(built, [(recorded["img"], recorded["img"])]).sizes[0]
    assert size.error is None
    ours = [{"i": r.index, "from": list(r.from_) if isinstance(r.from_, tuple) else r.from_,
             "type": r.type, "n": 1 if r.rule == "channels+repeats" else r.number,
             "params": r.params, "out_shape": t.out_shape, "stride": t.stride}
            for r, t in zip(built.layers, size.layers)]
    theirs = [{k: v for k, v in layer.items() if k != "args"} for layer in recorded["layers"]]
    assert ours == theirs
    assert built.params == recorded["params"]
    assert type(built.model.head).__name__ == recorded["head_type"]
    assert list(built.stride) == recorded["detect_strides"]
    assert built.anchors.tolist() == recorded["anchors_grid_units"]
    pixels = built.anchors * built.anchors.new_tensor(built.stride).view(-1, 1, 1)
    np.testing.assert_allclose(pixels.numpy(), recorded["anchor_grid_pixels"], rtol=1e-6)
    head = built.model.head
    assert (built.nc, head.na, head.nl, head.no) == (recorded["nc"], recorded["na"],
                                                     recorded["nl"], recorded["no"])
    state = {k: list(v.shape) for k, v in built.model.state_dict().items()}
    assert list(state.items()) == list(recorded["state_dict"].items())


def test_stock_yolov7_yamls_are_sniffed_as_yolov7(golden):
    """Every stock YAML that uses a module only YOLOv7 has is read as YOLOv7 without
    --dialect; the two baselines written in YOLOv5's own terms (yolov3, yolov3-spp) keep the
    default reading unless --dialect yolov7 is given."""
    read_as = {name: load_spec(_yaml(name)).dialect for name in golden if not name.startswith("_")}
    assert {name for name, dialect in read_as.items() if dialect != "yolov7"} == {
        "baseline/yolov3.yaml", "baseline/yolov3-spp.yaml"}


def _stock_yolov7_yamls() -> list[str]:
    return [name for name in _names() if not name.startswith("resnet18/") or "fixed" in name]


@pytest.mark.parametrize("name", _stock_yolov7_yamls())
def test_stock_yolov7_yamls_and_the_fixed_recipe_give_no_warning(name, golden):
    from yolodiag import commands

    report = commands.check(_yaml(name), ((640, 640),), dialect="yolov7")
    assert [f.code for f in report.findings if f.severity.value != "info"] == []
    assert report.exit_code == 0


def test_the_seeds_yolov7_recipe_is_diagnosed_in_yolov7_terms(golden):
    """The naive recipe on the yolov7-tiny head: strides 4/8/16 against the anchors' design
    (YD301), two head taps that skip a BasicBlock (YD204), BasicBlock's assumed registration."""
    from yolodiag import commands

    report = commands.check(_yaml("resnet18/yolov7-tiny-resnet18.yaml"))
    found = {f.code: f for f in report.findings}
    assert sorted(found) == ["YD110", "YD204", "YD301"]
    assert found["YD301"].message.startswith("IDetect level strides are 4/8/16, but its "
                                             "anchors are YOLOv7's default rows")
    assert [f.data["tapped"] for f in report.findings if f.code == "YD204"] == [6, 4]
    assert report.model.dialect["name"] == "yolov7"


def test_reversed_anchors_are_reported_with_yolov7s_own_flip_rule(tmp_path):
    """yolov7-tiny with its anchor rows reversed: YOLOv7 reverses them back (its rule compares
    the very first and very last anchor's areas), and YD402 says which rule did it."""
    import yaml

    from yolodiag import commands

    data = yaml.safe_load(_yaml("training/yolov7-tiny.yaml").read_text())
    data["anchors"] = data["anchors"][::-1]
    path = tmp_path / "reversed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    report = commands.check(path, ((640, 640),))
    found = [f for f in report.findings if f.code == "YD402"]
    assert len(found) == 1 and found[0].data["flipped"] is True
    assert "YOLOv7 flips the rows silently (it compares only the areas of the very first and " \
           "very last anchor" in found[0].message
