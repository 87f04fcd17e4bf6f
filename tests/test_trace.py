"""What the trace records besides shapes: inputs, receptive fields, mismatched adds, crashes."""

from __future__ import annotations

import pytest

from conftest import TINY, shared
from yolodiag.build.builder import build
from yolodiag.spec import load_spec, parse_spec
from yolodiag.trace import trace

HEADLESS = """\
nc: 1
depth_multiple: 1.0
width_multiple: 1.0
anchors: 1
backbone:
  [[-1, 1, Conv, [8, 3, 1]],     # 0 rf 3
   [-1, 1, Conv, [8, 3, 2]],     # 1 rf 5, jump 2
   [-1, 1, Conv, [8, 3, 1]],     # 2 rf 5 + 2 * 2 = 9
   [-1, 1, nn.MaxPool2d, [3, 1, 1]],  # 3 rf 9 + 2 * 2 = 13
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],  # 4 rf 13, jump 1
   [-1, 1, Conv, [8, 3, 1]],     # 5 rf 13 + 2 * 1 = 15
  ]
head: []
"""


def test_receptive_field_follows_kernels_strides_and_resampling():
    built = build(parse_spec(HEADLESS), device="meta")
    size = trace(built, [(32, 32)]).sizes[0]
    assert [layer.receptive_field for layer in size.layers] == [3, 5, 9, 13, 13, 15]


def test_yolov3_tiny_p5_sees_318_pixels():
    built = build(load_spec(shared("yamls", "stock", "yolov3-tiny.yaml")), device="meta")
    size = trace(built, [(416, 416)]).sizes[0]
    assert size.layer(15).receptive_field == 318


def test_transformer_layers_see_the_whole_image():
    built = build(load_spec(shared("yamls", "stock", "yolov5s-transformer.yaml")), device="meta")
    size = trace(built, [(256, 256)]).sizes[0]
    assert size.layer(8).receptive_field == float("inf")  # C3TR
    assert size.layer(7).receptive_field < 1000


def test_inputs_are_recorded_per_layer_and_for_the_failing_layer():
    text = TINY.replace("[[-1, 3], 1, Concat, [1]]", "[[-1, 4], 1, Concat, [1]]")
    built = build(parse_spec(text), device="meta", strict=False)
    assert built.probe_failure is not None and built.probe_failure[0] == 6
    size = trace(built, [(64, 64)]).sizes[0]
    assert size.failed_layer == 6 and size.failed_op == "cat"
    assert size.layer(6).in_shapes == ([[1, 128, 8, 8], [1, 128, 4, 4]],)
    assert size.layer(3).in_shapes == ([1, 32, 16, 16],)


def test_strict_build_still_refuses_a_crashing_probe():
    text = TINY.replace("[[-1, 3], 1, Concat, [1]]", "[[-1, 4], 1, Concat, [1]]")
    from yolodiag.findings import Refused

    with pytest.raises(Refused, match="YD202"):
        build(parse_spec(text), device="meta")


def test_an_add_of_mismatched_maps_is_recorded_even_when_torch_broadcasts_it():
    text = TINY.replace("[-1, 1, Conv, [64, 3, 2]],    # 3 /8",
                        "[-1, 1, GhostBottleneck, [64, 3, 1]],  # 3")
    built = build(parse_spec(text), device="meta", strict=False)
    size = trace(built, [(64, 64)]).sizes[0]
    assert [(a.layer, a.shapes, a.failed) for a in size.adds] == [
        (3, ([1, 64, 16, 16], [1, 32, 16, 16]), True)]
