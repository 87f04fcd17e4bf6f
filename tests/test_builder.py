"""The reference builder on hand-written YAMLs: parse_model v7.0 semantics, no ../shared needed."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import TINY
from yolodiag.build.builder import build
from yolodiag.dialects.yolov5.rules import RuleInput, make_divisible, passthrough
from yolodiag.findings import Refused
from yolodiag.spec import parse_spec
from yolodiag.trace import trace


def built(text: str = TINY, **kw):
    return build(parse_spec(text, "m.yaml"), **kw)


def test_tiny_model_strides_anchors_and_shapes():
    b = built(device="meta")
    assert b.stride == (8.0, 16.0)
    assert b.anchors.tolist() == [[[1.25, 1.625], [2.0, 3.75], [4.125, 2.875]],
                                  [[1.875, 3.8125], [3.875, 2.8125], [3.6875, 7.4375]]]
    shapes = [layer.out_shape for layer in trace(b, [(64, 96)]).sizes[0].layers]
    assert shapes[4] == [1, 128, 4, 6]
    assert shapes[6] == [1, 64 + 128, 8, 12]
    assert shapes[8][1] == [[1, 3, 8, 12, 7], [1, 3, 4, 6, 7]]


def test_make_divisible_rounds_up_to_eight():
    assert [make_divisible(x, 8) for x in (4, 8, 8.5, 16, 31.9)] == [8, 8, 16, 16, 32]


def test_width_and_depth_multiples_scale_as_yolov5():
    b = built(TINY.replace("depth_multiple: 1.0", "depth_multiple: 0.33")
              .replace("width_multiple: 1.0", "width_multiple: 0.25"), device="meta")
    conv0, c3 = b.layers[0], b.layers[2]
    assert conv0.args[:2] == (3, 8)  # 16 * 0.25 = 4, rounded up to 8
    assert c3.number == 1 and c3.args == (8, 8, 1)  # round(2 * 0.33) = 1 repeat, passed inside
    keys = b.model.state_dict().keys()
    assert "model.2.m.0.cv1.conv.weight" in keys and "model.2.m.1.cv1.conv.weight" not in keys


def test_number_one_is_never_scaled_and_round_is_pythons():
    assert built(TINY.replace("depth_multiple: 1.0", "depth_multiple: 0.1"),
                 device="meta").layers[0].number == 1
    five = built(TINY.replace("[-1, 2, C3, [32]]", "[-1, 5, C3, [32]]")
                 .replace("depth_multiple: 1.0", "depth_multiple: 0.5"), device="meta")
    assert five.layers[2].number == 2  # round(2.5) == 2 (banker's rounding, as Python)


def test_repeats_of_a_module_without_repeat_count_become_sequential():
    b = built(TINY.replace("[-1, 2, C3, [32]]", "[-1, 2, Bottleneck, [32]]"), device="meta")
    assert isinstance(b.model.model[2], nn.Sequential)
    keys = b.model.state_dict().keys()
    assert {"model.2.0.cv1.conv.weight", "model.2.1.cv1.conv.weight"} <= set(keys)


def test_passthrough_modules_get_raw_args_and_input_width():
    done = passthrough(RuleInput((192, 64, 1), -1, (3, 192), 1, 0.5, 21, 192))
    assert done.args == (192, 64, 1) and done.c2 == 192  # YOLOv5 assumes c2 = c1


def test_unregistered_width_change_breaks_the_layer_that_trusts_the_recorded_width():
    # nn.Conv2d really outputs 64 maps, parse_model records 192: Detect is built for 192 and
    # YOLOv5's own stride probe crashes there.
    with pytest.raises(Refused) as info:
        built(TINY.replace("[-1, 1, Conv, [64, 1, 1]]", "[-1, 1, nn.Conv2d, [192, 64, 1]]"),
              device="meta")
    assert info.value.finding.location.layer == 8


def test_batchnorm_gets_input_width_but_keeps_previous_c2():
    # parse_model sets args=[ch[f]] for nn.BatchNorm2d but never updates c2: it keeps the
    # previous row's width. Pinned because YOLOv5 does it, odd as it is.
    b = built(TINY.replace("[-1, 1, Conv, [64, 1, 1]]", "[3, 1, nn.BatchNorm2d, []]")
              .replace("[[7, 4], 1, Detect", "[[6, 4], 1, Detect"), device="meta")
    assert b.layers[7].args == (64,)
    assert b.layers[7].channels_out == b.layers[6].channels_out == 192


def test_concat_sums_widths_and_detect_gets_input_widths():
    b = built(device="meta")
    assert b.layers[6].channels_out == 64 + 128
    assert b.layers[8].args[2] == (64, 128)


def test_anchor_count_becomes_placeholder_rows():
    b = built(TINY.replace("anchors:\n  - [10,13, 16,30, 33,23]  # P3/8\n"
                           "  - [30,61, 62,45, 59,119]  # P4/16\n", "anchors: 2\n"),
              device="meta")
    assert b.layers[8].args[1] == ((0, 1, 2, 3), (0, 1, 2, 3))
    assert b.anchors.shape == (2, 2, 2)


def test_anchors_ordered_against_strides_are_flipped():
    flipped = TINY.replace("  - [10,13, 16,30, 33,23]  # P3/8\n  - [30,61, 62,45, 59,119]  # P4/16",
                           "  - [30,61, 62,45, 59,119]\n  - [10,13, 16,30, 33,23]")
    b = built(flipped, device="meta")
    assert b.anchors[0, 0].tolist() == [10 / 8, 13 / 8]  # the small anchors went to stride 8


def test_detect_bias_priors_follow_yolov5():
    torch.manual_seed(0)
    b = built()
    head = b.model.head
    for conv, s in zip(head.m, b.stride):
        bias = conv.bias.view(head.na, -1).detach()
        bound = 1 / math.sqrt(conv.in_channels)  # default init is uniform(-bound, bound)
        assert (bias[:, 4] - math.log(8 / (640 / s) ** 2)).abs().max() <= bound
        assert (bias[:, 5:] - math.log(0.6 / (2 - 0.99999))).abs().max() <= bound


def test_batchnorm_settings_and_inplace_activations():
    b = built(device="meta")
    norms = [m for m in b.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.eps == 1e-3 and m.momentum == 0.03 for m in norms)
    assert all(m.inplace for m in b.model.modules() if isinstance(m, nn.SiLU))


def test_activation_key_applies_to_its_model_and_does_not_leak():
    leaky = built("activation: nn.LeakyReLU(0.1)\n" + TINY, device="meta")
    acts = [m.act for m in leaky.model.modules() if hasattr(m, "act") and hasattr(m, "conv")]
    assert acts and all(isinstance(a, nn.LeakyReLU) and a.negative_slope == 0.1 for a in acts)
    assert len({id(a) for a in acts}) == len(acts)  # one object per layer, not one shared
    plain = built(device="meta")
    assert all(isinstance(m.act, nn.SiLU) for m in plain.model.modules()
               if hasattr(m, "act") and hasattr(m, "conv"))


def test_nc_argument_overrides_the_yaml():
    b = built(nc=4, device="meta")
    assert b.nc == 4 and b.model.head.no == 9
    assert b.model.head.m[0].out_channels == 27


def test_meta_build_allocates_no_weights():
    b = built(device="meta")
    assert all(p.is_meta for p in b.model.parameters())
    assert b.params == sum(p.numel() for p in b.model.parameters())


def test_real_build_runs_yolov5s_stride_probe_in_train_mode():
    b = built()
    # The probe is one train-mode forward: BatchNorm has tracked exactly one batch, as in YOLOv5.
    norms = [m for m in b.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(int(m.num_batches_tracked) == 1 for m in norms)


def test_train_mode_returns_raw_maps_eval_returns_decoded_and_raw():
    b = built()
    x = torch.rand(2, 3, 64, 64)
    b.model.train()
    raw = b.model(x)
    assert [tuple(r.shape) for r in raw] == [(2, 3, 8, 8, 7), (2, 3, 4, 4, 7)]
    b.model.eval()
    decoded, raw = b.model(x)
    assert decoded.shape == (2, 3 * (64 + 16), 7)
    assert (decoded[..., 4:] >= 0).all() and (decoded[..., 4:] <= 1).all()


def test_detect_forward_leaves_its_input_list_alone():
    b = built()
    head = b.model.head
    features = [torch.rand(1, 64, 8, 8), torch.rand(1, 128, 4, 4)]
    before = list(features)
    head(features)
    assert all(a is b for a, b in zip(features, before))


@pytest.mark.parametrize("edit, layer", [
    (("[-1, 2, C3, [32]]", "[[-1, 0], 2, C3, [32]]"), 2),  # channel-aware with two inputs
    (("[-1, 1, Conv, [64, 1, 1]]", "[-1, 1, Conv, [64, 'nearest']]"), 7),  # constructor raises
    (("[-1, 1, Conv, [64, 1, 1]]", "[-1, 1, Conv, []]"), 7),  # no output width
    (("[[-1, 3], 1, Concat, [1]]", "[-1, 1, Concat, [1]]"), 6),  # concat of one index
])
def test_rows_that_cannot_be_built_name_the_layer(edit, layer):
    with pytest.raises(Refused) as info:
        built(TINY.replace(*edit), device="meta")
    assert info.value.finding.code == "YD202"
    assert info.value.finding.location.layer == layer


def test_forward_failure_in_stride_probe_names_the_layer():
    # Concat of a /8 map with a /16 map: YOLOv5's own build would crash in its stride probe.
    with pytest.raises(Refused) as info:
        built(TINY.replace("[[-1, 3], 1, Concat, [1]]", "[[-1, 4], 1, Concat, [1]]"), device="meta")
    assert info.value.finding.code == "YD202"
    assert info.value.finding.location.layer == 6


def test_contract_and_expand_change_width_by_gain_squared():
    text = TINY.replace("[-1, 1, Conv, [64, 1, 1]]", "[-1, 1, Contract, [2]]").replace(
        "[[7, 4], 1, Detect", "[[-1, 4], 1, Concat, [1]],\n   [-1, 1, Expand, [2]],\n"
        "   [[-2, 4], 1, Detect")
    b = built(text, device="meta")
    assert b.layers[7].channels_out == 192 * 4
    assert b.layers[9].channels_out == (192 * 4 + 128) // 4
