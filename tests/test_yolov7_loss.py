"""YOLOv7's losses (ComputeLoss and ComputeLossOTA) against the numbers recorded from the real
YOLOv7 at commit a207844 (../shared/golden/yolov7/numerics/yolov7-tiny.numerics.pt): on its own
train outputs, and on ours from the same weights. Also the batch without targets (YOLOv7 crashes
on a CPU there), the IAuxDetect refusal, the hyp and its scaling, and the priors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import shared
from yolodiag.build.builder import build
from yolodiag.dialects import DIALECTS
from yolodiag.dialects.yolov7 import loss as v7loss
from yolodiag.dialects.yolov7.heads import IDetect
from yolodiag.dialects.yolov7.loss import (
    HYP,
    HeadGeometry,
    candidate_loss,
    compute_loss,
    loss_terms,
    ota_loss,
    prior_loss,
    prior_maps,
    train_hyp,
)
from yolodiag.spec import load_spec, parse_spec

FIXTURE = ("golden", "yolov7", "numerics", "yolov7-tiny.numerics.pt")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here"))]


@pytest.fixture(scope="module")
def recorded() -> dict:
    return torch.load(shared(*FIXTURE), weights_only=True)


@pytest.fixture(scope="module")
def geometry(recorded) -> HeadGeometry:
    return HeadGeometry(recorded["detect_anchors_grid_units"], recorded["detect_stride"],
                        recorded["nc"])


@pytest.fixture(scope="module")
def ours(recorded):
    """Our yolov7-tiny at nc=4 with the recorded weights, and its train-mode outputs."""
    built = build(parse_spec(recorded["yaml"], "yolov7-tiny.yaml", dialect="yolov7"),
                  nc=recorded["nc"])
    built.model.load_state_dict({k: v.float() for k, v in recorded["state_dict"].items()},
                                strict=True)
    built.model.train()
    with torch.no_grad():
        outputs = built.model(recorded["input"])
    return built, outputs


def _rel(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs() / theirs.abs()).max().item()


# --- against the recorded YOLOv7 numbers ---------------------------------------------------

@pytest.mark.parametrize("ours_fn, key", [(candidate_loss, ""), (ota_loss, "_ota")],
                         ids=["ComputeLoss", "ComputeLossOTA"])
def test_losses_on_recorded_outputs_match_yolov7_within_1e_5(recorded, geometry, ours_fn, key):
    loss, items = ours_fn(geometry, recorded["train_outputs"], recorded["targets"],
                          recorded["hyp"])
    assert loss.shape == (1,) and items.shape == (4,)  # box, obj, cls, total: YOLOv7's four
    assert _rel(loss, recorded[f"loss{key}"]) < 1e-5
    assert _rel(items, recorded[f"loss_items{key}"]) < 1e-5


def test_ota_and_candidate_losses_differ_as_recorded(recorded, geometry):
    """The two losses are not one loss twice: SimOTA keeps fewer positives, and the recorded
    numbers say by how much."""
    _, candidate = candidate_loss(geometry, recorded["train_outputs"], recorded["targets"],
                                  recorded["hyp"])
    _, ota = ota_loss(geometry, recorded["train_outputs"], recorded["targets"], recorded["hyp"])
    assert _rel(candidate - ota, recorded["loss_items"] - recorded["loss_items_ota"]) < 1e-4
    assert not torch.allclose(candidate, ota, rtol=1e-2)


def test_our_yolov7_tiny_reproduces_train_outputs_and_both_losses(recorded, ours):
    built, outputs = ours
    assert built.dialect is DIALECTS["yolov7"] and isinstance(built.model.head, IDetect)
    assert torch.equal(built.anchors, recorded["detect_anchors_grid_units"])
    assert list(built.stride) == recorded["detect_stride"].tolist()
    assert len(outputs) == len(recorded["train_outputs"]) == 3
    for mine, theirs in zip(outputs, recorded["train_outputs"]):
        assert mine.shape == theirs.shape
        assert (mine - theirs).abs().max().item() < 1e-4
    for source in (built, built.model.head):
        for ours_fn, key in ((candidate_loss, ""), (ota_loss, "_ota")):
            loss, items = ours_fn(source, outputs, recorded["targets"], recorded["hyp"])
            assert _rel(loss, recorded[f"loss{key}"]) < 1e-5
            assert _rel(items, recorded[f"loss_items{key}"]) < 1e-5


def test_compute_loss_trains_with_ota_as_train_py_when_loss_ota_is_1(recorded, geometry):
    raw, targets, hyp = recorded["train_outputs"], recorded["targets"], recorded["hyp"]
    assert recorded["hyp_file"]["loss_ota"] == 1 and HYP["loss_ota"] == 1
    loss, items = compute_loss(geometry, raw, targets, hyp)
    assert items.shape == (3,)  # the engine's box, obj, cls
    assert _rel(loss, recorded["loss_ota"]) < 1e-5
    assert _rel(items, recorded["loss_items_ota"][:3]) < 1e-5
    terms = loss_terms(geometry, raw, targets, hyp)
    assert torch.equal(torch.cat(terms).detach(), items)
    _, plain = compute_loss(geometry, raw, targets, {**hyp, "loss_ota": 0})
    assert _rel(plain, recorded["loss_items"][:3]) < 1e-5


def test_ota_image_size_defaults_to_level_0_height_times_stride(recorded, geometry):
    raw, targets, hyp = recorded["train_outputs"], recorded["targets"], recorded["hyp"]
    assert raw[0].shape[2] * recorded["detect_stride"][0] == recorded["img"] == 128
    derived = ota_loss(geometry, raw, targets, hyp)[1]
    assert torch.equal(derived, ota_loss(geometry, raw, targets, hyp, img_size=128)[1])
    # The size prices the boxes: a wrong one picks other positives.
    assert not torch.equal(derived, ota_loss(geometry, raw, targets, hyp, img_size=512)[1])


def test_gradients_flow_through_ota_positives_only(recorded, geometry):
    raw = [r.clone().requires_grad_(True) for r in recorded["train_outputs"]]
    box, obj, cls = loss_terms(geometry, raw, recorded["targets"], recorded["hyp"])
    box.backward()
    cells = sum(0 if r.grad is None else r.grad[..., :4].ne(0).any(-1).sum().item() for r in raw)
    assert 0 < cells < sum(r[..., 0].numel() for r in raw)


# --- a batch without targets -----------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_batch_without_targets_gives_box_0_cls_0_and_obj_against_zeros(recorded, geometry,
                                                                        device):
    """YOLOv7's ComputeLossOTA builds its empty matches on 'cuda:0' (a crash without CUDA);
    on CUDA it gives what its ComputeLoss gives: no box or class term, objectness against an
    all-zero target, weighted per level."""
    raw = [r.to(device) for r in recorded["train_outputs"]]
    empty = torch.zeros(0, 6, device=device)
    hyp = recorded["hyp"]
    loss, items = ota_loss(geometry, raw, empty, hyp)
    assert items[0] == 0 and items[2] == 0
    expected = sum(w * F.binary_cross_entropy_with_logits(p[..., 4], torch.zeros_like(p[..., 4]))
                   for w, p in zip((4.0, 1.0, 0.4), raw)) * hyp["obj"]
    assert _rel(items[1], expected) < 1e-6
    assert torch.equal(items, candidate_loss(geometry, raw, empty, hyp)[1])
    assert loss.device.type == device and _rel(loss, items[3] * 2) < 1e-6


def test_image_without_targets_beside_one_with_targets(recorded, geometry):
    """Image 0's only box dropped: image 0 then only teaches objectness 0, image 1 as before."""
    targets = recorded["targets"][recorded["targets"][:, 0] == 1]
    _, items = ota_loss(geometry, recorded["train_outputs"], targets, recorded["hyp"])
    assert items[0] > 0 and items[2] > 0
    assert not torch.equal(items, ota_loss(geometry, recorded["train_outputs"],
                                           recorded["targets"], recorded["hyp"])[1])


# --- IAuxDetect ----------------------------------------------------------------------------

def test_iauxdetect_lead_and_aux_maps_are_refused_with_the_reason(recorded, geometry):
    raw = list(recorded["train_outputs"]) * 2  # 2 * nl maps, as IAuxDetect returns in train mode
    with pytest.raises(ValueError, match="IAuxDetect.*train_aux.py"):
        ota_loss(geometry, raw, recorded["targets"], recorded["hyp"])
    with pytest.raises(ValueError, match="IAuxDetect"):
        candidate_loss(geometry, raw, recorded["targets"], recorded["hyp"])


def test_iauxdetect_models_are_untrainable_and_idetect_models_trainable():
    aux = build(load_spec(shared("yamls", "yolov7", "stock", "training", "yolov7-w6.yaml"),
                          dialect="yolov7"), device="meta")
    needs = aux.dialect.model.untrainable(aux)
    assert needs is not None and "train_aux.py" in needs
    tiny = build(load_spec(shared("yamls", "yolov7", "stock", "training", "yolov7-tiny.yaml"),
                           dialect="yolov7"), device="meta")
    assert tiny.dialect.model.untrainable(tiny) is None


# --- hyp, scaling, priors ------------------------------------------------------------------

def test_hyp_is_train_py_default_hyp_scratch_p5():
    run = ("golden", "yolov7", "runs", "tiny-scratch")
    saved = yaml.safe_load(shared(*run, "hyp.yaml").read_text())  # default --hyp: p5
    assert yaml.safe_load(shared(*run, "opt.yaml").read_text())["hyp"].endswith("p5.yaml")
    assert {k: saved[k] for k in HYP if k != "label_smoothing"} == {
        k: v for k, v in HYP.items() if k != "label_smoothing"}
    assert HYP["label_smoothing"] == yaml.safe_load(
        shared(*run, "opt.yaml").read_text())["label_smoothing"]


def test_train_hyp_scales_as_train_py(recorded):
    scaled = train_hyp(recorded["hyp_file"], recorded["nc"], recorded["img"], 3)
    for key in ("box", "cls", "obj"):
        assert scaled[key] == pytest.approx(recorded["hyp"][key], rel=1e-12)
    assert scaled["cls"] != recorded["hyp_file"]["cls"]  # nc 4 of 80: scaled down
    four = train_hyp(HYP, 80, 640, 4)
    assert (four["box"], four["cls"], four["obj"]) == pytest.approx((0.0375, 0.225, 0.525))


def test_prior_maps_hold_yolov7_bias_init(ours, recorded):
    built, _ = ours
    grids = [tuple(r.shape[2:4]) for r in recorded["train_outputs"]]
    maps = prior_maps(built, grids, batch=2)
    for p, stride in zip(maps, built.stride):
        assert p.shape[:4] == (2, 3, *p.shape[2:4])
        assert p[..., :4].abs().max() == 0
        assert p[..., 4].unique().item() == pytest.approx(
            torch.log(torch.tensor(8 / (640 / stride) ** 2)).item(), rel=1e-6)
        assert p[..., 5:].unique().item() == pytest.approx(
            torch.log(torch.tensor(0.6 / (4 - 0.99))).item(), rel=1e-6)
    loss, items = prior_loss(built, grids, recorded["targets"], 2, recorded["hyp"])
    assert torch.isfinite(loss).all() and (items > 0).all()
    assert torch.equal(loss, compute_loss(built, maps, recorded["targets"], recorded["hyp"])[0])


def test_dialect_registers_the_loss():
    dialect = DIALECTS["yolov7"]
    assert "loss" in dialect.capabilities
    assert dialect.loss.compute_loss is v7loss.compute_loss
    assert dialect.loss.assign is DIALECTS["yolov5"].loss.assign  # one matcher for both
