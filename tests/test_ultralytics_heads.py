"""Our Ultralytics 8.4.190 heads (DFL, Detect, v10Detect) and their box arithmetic against the
real package's recorded truth (../shared/golden/ultralytics): the head of every one of the 54
recorded models (state-dict keys and shapes, parameters, head facts, output shapes at 640, bias
priors), the recorded numerics (the head alone, from the stored head inputs and state), and,
marked `ultralytics`, the real classes run live on random maps with perturbed weights.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import SHARED, shared
from yolodiag.dialects.ultralytics.decode import (
    bbox2dist,
    dist2bbox,
    make_anchors,
    top_detections,
)
from yolodiag.dialects.ultralytics.heads import DFL, Detect, v10Detect

GOLDEN = ("golden", "ultralytics", "build.json")
NUMERICS = ["yolo11n", "yolov8n", "yolo11n-resnet18"]
HERE = Path(__file__).parent


def _recorded() -> dict:
    path = SHARED.joinpath(*GOLDEN)
    if not path.exists():  # collected anyway; each case then skips through shared()
        return {}
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


RECORDED = _recorded()
MODELS = list(RECORDED) or ["(golden build file absent)"]


@pytest.fixture(scope="module")
def golden() -> dict:
    return {k: v for k, v in json.loads(shared(*GOLDEN).read_text()).items()
            if not k.startswith("_")}


def make_head(type_name: str, args, legacy: bool) -> Detect:
    """Our head as the dialect's rule builds it: v10Detect takes no legacy flag."""
    return v10Detect(*args) if type_name == "v10Detect" else Detect(*args, legacy=legacy)


def finish_batchnorm(head: nn.Module) -> None:
    """What 8.4.190's initialize_weights does to every BatchNorm2d of a built model."""
    for m in head.modules():
        if type(m) is nn.BatchNorm2d:
            m.eps, m.momentum = 1e-3, 0.03


def head_layer(model: dict) -> dict:
    return model["layers"][-1]


def branch_layout(branch: nn.Sequential) -> list[str]:
    """The level-0 class branch as build.json names it: `Sequential(DWConv,Conv)`, `Conv2d`."""
    def name(m: nn.Module) -> str:
        if isinstance(m, nn.Sequential):
            return f"Sequential({','.join(type(c).__name__ for c in m)})"
        return type(m).__name__
    return [name(m) for m in branch]


def shapes(value):
    """Nested shapes of a head output, lists for tuples, as build.json writes them."""
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, dict):
        return {k: shapes(v) for k, v in value.items()}
    return [shapes(v) for v in value]


@pytest.mark.parametrize("name", MODELS)
def test_head_builds_as_recorded(name, golden):
    model = golden[name]
    layer, facts = head_layer(model), model["detect"]
    head = make_head(layer["type"], layer["args"], facts["legacy"])
    prefix = f"model.{layer['i']}."
    recorded = {k[len(prefix):]: v for k, v in model["state_dict"].items()
                if k.startswith(prefix)}
    assert {k: list(v.shape) for k, v in head.state_dict().items()} == recorded
    assert sum(p.numel() for p in head.parameters()) == layer["params"]
    assert (head.nc, head.nl, head.no, head.reg_max, head.legacy, head.max_det) == (
        facts["nc"], facts["nl"], facts["no"], facts["reg_max"], facts["legacy"],
        facts["max_det"])
    assert head.cv2[0][0].conv.out_channels == facts["box_hidden_c2"]
    assert head.cv3[0][-1].in_channels == facts["cls_hidden_c3"]
    assert branch_layout(head.cv3[0]) == facts["cv3_level0_modules"]
    assert type(head.dfl).__name__ == facts["dfl"]
    assert (head.has_one2one, head.end2end) == (facts["one2one_branch"],
                                                facts["end2end_property"])
    assert "stride" not in head.state_dict()


@pytest.mark.parametrize("name", MODELS)
def test_head_output_shapes_at_640_as_recorded(name, golden):
    model = golden[name]
    layer = head_layer(model)
    inputs = [model["layers"][i]["out_shape"] for i in layer["from"]]
    with torch.device("meta"):  # shapes only: the big heads at 640 cost nothing
        head = make_head(layer["type"], layer["args"], model["detect"]["legacy"]).eval()
        head.stride.copy_(torch.tensor(model["detect"]["stride"]))
        out = head.assemble(head([torch.zeros(s) for s in inputs]), training=False)
    assert shapes(out) == layer["out_shape"]


@pytest.mark.parametrize("name", MODELS)
def test_bias_init_gives_recorded_priors(name, golden):
    model = golden[name]
    layer, facts = head_layer(model), model["detect"]
    head = make_head(layer["type"], layer["args"], facts["legacy"])
    head.bias_init(torch.tensor(facts["stride"]))
    branches = [(head.cv2, head.cv3)]
    if head.has_one2one:
        branches.append((head.one2one_cv2, head.one2one_cv3))
    for boxes, classes in branches:
        for level, (box, cls) in enumerate(zip(boxes, classes)):
            box_bias, class_bias = box[-1].bias, cls[-1].bias
            for bias, recorded in ((box_bias, facts["bias_box"]), (class_bias, facts["bias_cls"])):
                torch.testing.assert_close(bias, torch.full_like(bias, recorded[level]),
                                           atol=1e-6, rtol=0)


def _numerics_head(name: str, golden: dict) -> tuple[Detect, dict]:
    """Our head with the fixture's stored state (half -> float) and measured strides."""
    recorded = torch.load(shared("golden", "ultralytics", "numerics", f"{name}.numerics.pt"),
                          weights_only=True)
    layer = head_layer(golden[recorded["name"]])
    _, reg_max, end2end, widths = layer["args"]
    head = Detect(recorded["nc"], reg_max, end2end, widths, legacy=recorded["detect_legacy"])
    finish_batchnorm(head)
    prefix = f"model.{layer['i']}."
    head.load_state_dict({k[len(prefix):]: v.float() for k, v in recorded["state_dict"].items()
                          if k.startswith(prefix)}, strict=True)
    head.stride.copy_(recorded["detect_stride"])
    assert head.reg_max == recorded["detect_reg_max"]
    return head, recorded


@pytest.mark.parametrize("name", NUMERICS)
def test_decode_of_recorded_raw_output_gives_recorded_eval_output(name, golden):
    # Decoding reads only feats' sizes, the strides and reg_max. Bit-exact here; pixel outputs
    # reach ~480, where 1e-4 allows two float32 steps of another CPU's kernels.
    head, recorded = _numerics_head(name, golden)
    decoded = head.decode(recorded["eval_raw"])
    torch.testing.assert_close(decoded, recorded["eval_output"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", NUMERICS)
def test_head_alone_reproduces_recorded_outputs_from_its_recorded_inputs(name, golden):
    # `feats` in 8.4.190's raw dict are the head's own inputs, so the head is checked alone.
    head, recorded = _numerics_head(name, golden)
    raw = recorded["eval_raw"]
    with torch.no_grad():
        out = head.eval()(raw["feats"])
        decoded, again = head.assemble(out, training=False)
    assert again is out
    torch.testing.assert_close(out["boxes"], raw["boxes"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["scores"], raw["scores"], atol=1e-5, rtol=0)
    torch.testing.assert_close(decoded, recorded["eval_output"], atol=1e-4, rtol=0)
    train = recorded["train_outputs"]
    with torch.no_grad():  # train mode: BatchNorm on batch statistics (eps 1e-3)
        out = head.train()(train["feats"])
    assert head.assemble(out, training=True) is out
    torch.testing.assert_close(out["boxes"], train["boxes"], atol=2e-5, rtol=0)
    torch.testing.assert_close(out["scores"], train["scores"], atol=2e-5, rtol=0)


def _small_end2end_head() -> Detect:
    """A YOLO26-style head (reg_max 1, one-to-one branch) on two small levels."""
    torch.manual_seed(0)
    head = Detect(3, 1, True, (16, 32), legacy=False)
    head.stride.copy_(torch.tensor([8.0, 16.0]))
    head.bias_init()
    return head


def _maps(requires_grad: bool = False) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(2, c, s, s, generator=generator).requires_grad_(requires_grad)
            for c, s in ((16, 8), (32, 4))]


def test_one2one_branch_trains_on_detached_features():
    head = _small_end2end_head().train()
    maps = _maps(requires_grad=True)
    out = head(maps)
    assert set(out) == {"one2many", "one2one"}
    out["one2one"]["scores"].sum().backward()
    assert all(m.grad is None for m in maps)
    assert head.one2one_cv3[0][-1].bias.grad is not None
    out["one2many"]["scores"].sum().backward()
    assert all(m.grad is not None for m in maps)


def test_eval_right_after_building_decodes_the_one2many_branch():
    head = _small_end2end_head().eval()
    with torch.no_grad():
        for branches in (head.one2one_cv2, head.one2one_cv3):  # a deep copy until trained
            branches[0][-1].bias.add_(1.0)
        out = head(_maps())
        decoded, _ = head.assemble(out, training=False)
        torch.testing.assert_close(decoded, head.decode(out["one2many"]))
        assert not torch.allclose(decoded, head.decode(out["one2one"]))


def test_end2end_flag_gives_top_k_corner_rows_of_the_one2one_branch():
    head = _small_end2end_head().eval()
    head.end2end, head.max_det = True, 5
    with torch.no_grad():
        out = head(_maps())
        rows, _ = head.assemble(out, training=False)
    assert rows.shape == (2, 5, 6)
    # Without ties the two-stage selection is the global top 5 of (anchor, class) pairs.
    table = head.decode(out["one2one"], xywh=False).transpose(1, 2)  # (B, A, 4 + nc)
    best = table[..., 4:].flatten(1).topk(5, dim=1)
    anchors, classes = best.indices // 3, best.indices % 3
    torch.testing.assert_close(rows[..., 4], best.values)
    torch.testing.assert_close(rows[..., 5], classes.float())
    torch.testing.assert_close(rows[..., :4],
                               table[..., :4].gather(1, anchors[..., None].expand(-1, -1, 4)))
    assert (rows[..., 2:4] >= rows[..., 0:2]).all()  # corners, not centre and size


def test_end2end_flag_needs_a_one2one_branch():
    with pytest.raises(ValueError, match="one-to-one"):
        Detect(3, 16, False, (16, 32)).end2end = True


def test_forward_refuses_a_wrong_number_of_maps():
    with pytest.raises(ValueError, match="2 levels got 1"):
        Detect(3, 16, False, (16, 32))(_maps()[:1])


def test_raw_maps_are_the_head_inputs_one_per_level():
    head = _small_end2end_head()
    maps = _maps()
    assert [m.shape[-2] for m in head.raw_maps(head(maps))] == [8, 4]


def test_dfl_takes_the_expected_bin():
    logits = torch.full((1, 4 * 16, 2), -1e4)
    for side, bin_ in enumerate((0, 3, 7, 15)):
        logits[0, side * 16 + bin_, 0] = 0.0  # one-hot at that bin
    logits[0, :, 1] = 0.0  # uniform: the mean bin, 7.5
    expected = torch.tensor([[[0.0, 7.5], [3.0, 7.5], [7.0, 7.5], [15.0, 7.5]]])
    torch.testing.assert_close(DFL(16)(logits), expected)


def test_make_anchors_gives_cell_centres_row_major_per_level():
    points, strides = make_anchors([torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 1, 1)],
                                   torch.tensor([8.0, 16.0]))
    assert points.tolist() == [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [0.5, 1.5], [1.5, 1.5],
                               [2.5, 1.5], [0.5, 0.5]]
    assert strides.flatten().tolist() == [8.0] * 6 + [16.0]


def test_box_distances_round_trip_and_clamp():
    points = torch.tensor([[2.5, 3.5], [0.5, 0.5]])
    distances = torch.tensor([[1.0, 2.0, 3.0, 0.5], [0.25, 0.0, 20.0, 1.0]])
    corners = dist2bbox(distances, points, xywh=False)
    assert corners.tolist() == [[1.5, 1.5, 5.5, 4.0], [0.25, 0.5, 20.5, 1.5]]
    assert dist2bbox(distances, points).tolist() == [[3.5, 2.75, 4.0, 2.5],
                                                     [10.375, 1.0, 20.25, 1.0]]
    torch.testing.assert_close(bbox2dist(points, corners), distances)
    clamped = bbox2dist(points, corners, reg_max=15).tolist()[1]
    assert clamped == pytest.approx([0.25, 0.0, 14.99, 1.0])


def test_top_detections_take_best_anchors_then_best_pairs():
    boxes = torch.arange(12.0).view(1, 3, 4)
    scores = torch.tensor([[[0.1, 0.2], [0.9, 0.8], [0.3, 0.05]]])
    rows = top_detections(boxes, scores, max_det=2)
    # Anchors 1 and 2 have the best scores; anchor 1's two classes beat anchor 2's best.
    assert rows.tolist() == [[[4.0, 5.0, 6.0, 7.0, pytest.approx(0.9), 0.0],
                              [4.0, 5.0, 6.0, 7.0, pytest.approx(0.8), 1.0]]]


# Live oracle: the real 8.4.190 classes (tests/oracle/ultralytics_heads.py, one subprocess).

def _oracle_cases() -> list[dict]:
    """One case per distinct recorded head (type, args, legacy, strides), plus nc=4 heads (the
    numerics' class count, where the class width falls to ch[0]); maps of 2 * 2^k cells. The
    seeded initial weights are compared where the first level is at most 64 wide (enough to
    pin the order of construction, small enough to pass through a file quickly)."""
    cases: dict[str, dict] = {}
    for model in RECORDED.values():
        layer, facts = head_layer(model), model["detect"]
        case = {"type": layer["type"], "args": layer["args"], "legacy": facts["legacy"],
                "stride": facts["stride"]}
        cases.setdefault(json.dumps(case), case)
    cases["nc4"] = {"type": "Detect", "args": [4, 16, None, [32, 64, 128]], "legacy": False,
                    "stride": [8.0, 16.0, 32.0]}
    cases["nc4-e2e"] = {"type": "Detect", "args": [4, 1, True, [32, 64, 128]], "legacy": True,
                        "stride": [8.0, 16.0, 32.0]}
    cases["v10-nc4"] = {"type": "v10Detect", "args": [4, [32, 64, 128]], "legacy": False,
                        "stride": [8.0, 16.0, 32.0]}
    for case in cases.values():
        levels = len(case["args"][-1])
        case["sizes"] = [2 * 2 ** (levels - 1 - k) for k in range(levels)]
        case["initial"] = case["args"][-1][0] <= 64
    return list(cases.values())


ORACLE_CASES = _oracle_cases()


def _case_id(case: dict) -> str:
    return f"{case['type']}{case['args']}{'-legacy' if case['legacy'] else ''}".replace(" ", "")


def _ultralytics_python() -> str:
    python = os.environ.get("ULTRALYTICS_PYTHON")
    if not python:
        pytest.skip("$ULTRALYTICS_PYTHON names no interpreter with ultralytics==8.4.190")
    return python


@pytest.fixture(scope="module")
def oracle(tmp_path_factory) -> list[dict]:
    python = _ultralytics_python()
    folder = tmp_path_factory.mktemp("ultralytics_heads")
    (folder / "cases.json").write_text(json.dumps(ORACLE_CASES))
    subprocess.run([python, "-W", "ignore", str(HERE / "oracle" / "ultralytics_heads.py"),
                    str(folder / "cases.json"), str(folder / "heads.pt")], check=True,
                   capture_output=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    return torch.load(folder / "heads.pt", weights_only=True)


def _assert_same_output(ours, theirs, atol: float) -> None:
    """The same nesting (dict keys, list lengths) and every tensor within atol."""
    if isinstance(theirs, torch.Tensor):
        torch.testing.assert_close(ours, theirs, atol=atol, rtol=0)
        return
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs)
        for key in theirs:
            _assert_same_output(ours[key], theirs[key], atol)
        return
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        _assert_same_output(a, b, atol)


@pytest.mark.ultralytics
@pytest.mark.parametrize("index", range(len(ORACLE_CASES)),
                         ids=[_case_id(c) for c in ORACLE_CASES])
def test_real_head_gives_the_same_priors_and_outputs(index, oracle):
    case, theirs = ORACLE_CASES[index], oracle[index]
    torch.manual_seed(0)
    head = make_head(case["type"], case["args"], case["legacy"])
    ours = head.state_dict()
    if theirs["initial"] is not None:
        assert list(ours) == list(theirs["initial"])
        # v10Detect: 8.4.190 builds Detect's class branch first and then replaces it, so the
        # same seed gives other class-branch weights; everything else is drawn in its order.
        redrawn = ("cv3.", "one2one_cv3.") if case["type"] == "v10Detect" else ()
        for key, value in theirs["initial"].items():
            if not key.startswith(redrawn):
                assert torch.equal(ours[key], value), key
    head.bias_init(torch.tensor(case["stride"]))
    for key, value in theirs["biases"].items():
        assert torch.equal(ours[key], value), key
    finish_batchnorm(head)
    head.load_state_dict({k: v.float() if v.is_floating_point() else v
                          for k, v in theirs["state"].items()}, strict=True)
    head.stride.copy_(torch.tensor(case["stride"]))
    with torch.no_grad():
        out = head.eval()(theirs["maps"])
        _assert_same_output(head.assemble(out, training=False), theirs["eval"], atol=1e-5)
        if head.has_one2one:
            head.end2end = True
            _assert_same_output(head.assemble(out, training=False)[0], theirs["end2end"],
                                atol=1e-5)
            head.end2end = False
        out = head.train()(theirs["maps"])
        _assert_same_output(head.assemble(out, training=True), theirs["train"], atol=1e-5)
