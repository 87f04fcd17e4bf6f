"""Shape-only forwards on the meta device leave torch as they found it."""

from __future__ import annotations

import itertools
import subprocess
import sys

import torch
import torch.nn.functional as F

from conftest import TINY
from yolodiag.build.builder import build
from yolodiag.spec import parse_spec
from yolodiag.trace import trace

# A fresh interpreter's first meta trace, then what a test asserts about the modules it left.
A_META_TRACE = """
import sys, torch
from yolodiag.build.builder import build
from yolodiag.spec import parse_spec
from yolodiag.trace import trace
import conftest
trace(build(parse_spec(conftest.TINY), device="meta"), [(64, 64)])
"""
AFTER_A_META_TRACE = A_META_TRACE + """
assert "torch._dynamo" not in sys.modules, "the trace imported torch._dynamo"
assert "_dynamo" not in torch.__dict__
y = torch.zeros(2, 3, device="meta") + 1  # a Python meta kernel outside the trace
import torch._dynamo
assert hasattr(torch._dynamo, "optimize"), "the stand-in is still there"
print(torch.compile(lambda x: x * 2, backend="eager")(torch.ones(2)).tolist())
"""


def _fresh_python(script: str) -> str:
    """What `script` prints in a new interpreter run from the tests folder (it must succeed)."""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=__file__.rsplit("/", 1)[0])
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_meta_trace_skips_the_dynamo_import_and_restores_torch():
    assert _fresh_python(AFTER_A_META_TRACE) == "[2.0, 2.0]"


HANDS_OVER = """
import sys, torch
from yolodiag.build.meta import shape_only
with shape_only(torch.device("meta")):
    y = torch.zeros(2, device="meta") + 1
    import torch._dynamo
    assert callable(torch._dynamo.optimize)  # not on the stand-in: the real module answers
assert hasattr(sys.modules["torch._dynamo"], "optimize")
print("ok")
"""


def test_dynamo_stand_in_hands_over_anything_but_disable():
    assert _fresh_python(HANDS_OVER) == "ok"


def test_meta_and_real_forwards_give_the_same_shapes():
    spec = parse_spec(TINY)
    meta = trace(build(spec, device="meta"), [(96, 64)]).sizes[0]
    real = trace(build(spec), [(96, 64)]).sizes[0]
    assert [layer.out_shape for layer in meta.layers] == [layer.out_shape for layer in real.layers]
    assert meta.gflops == real.gflops > 0


def test_real_batchnorm_is_untouched_outside_meta():
    b = build(parse_spec(TINY))
    b.model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        decoded, _ = b.model(x)
    assert torch.isfinite(decoded).all()
    norm = b.model.model[0].bn
    assert not torch.equal(norm(torch.ones(1, 16, 2, 2)), torch.ones(1, 16, 2, 2))


def test_shape_only_batchnorm_still_refuses_the_wrong_channel_count():
    from yolodiag.build.meta import shape_only

    norm = torch.nn.BatchNorm2d(8, device="meta")
    with shape_only(torch.device("meta")):
        assert norm(torch.zeros(1, 8, 4, 4, device="meta")).shape == (1, 8, 4, 4)
        try:
            norm(torch.zeros(1, 6, 4, 4, device="meta"))
        except RuntimeError as e:
            assert "should contain 6 elements not 8" in str(e)
        else:
            raise AssertionError("a BatchNorm2d(8) accepted 6 channels on meta")


AFTER_A_META_TRACE_SYMBOLIC = A_META_TRACE + """
for name in ("sympy", "torch.fx.experimental.symbolic_shapes"):
    assert name not in sys.modules, f"the trace imported {name}"
from torch.fx.experimental.symbolic_shapes import ShapeEnv  # the real module, not a stand-in
import sympy
print(type(sympy.Symbol("x")).__name__, isinstance(sympy.Symbol("x"), sympy.Basic))
"""


def test_meta_trace_answers_symbolic_shapes_without_importing_sympy():
    assert _fresh_python(AFTER_A_META_TRACE_SYMBOLIC) == "Symbol True"


SYMPY_DURING_A_TRACE = """
import sys, torch
from yolodiag.build.meta import shape_only
with shape_only(torch.device("meta")):
    import sympy  # the stand-in
    x = sympy.Symbol("x")  # asks for more than Basic: the real sympy answers from now on
    assert isinstance(x, sympy.Basic), "the stand-in's Basic outlived the hand-over"
    from torch.fx.experimental.symbolic_shapes import ShapeEnv, guard_or_false
    assert guard_or_false(True) is True
print(sys.modules["sympy"] is not None, isinstance(x, sys.modules["sympy"].Basic))
"""


def test_symbolic_stand_ins_hand_over_to_the_real_modules():
    assert _fresh_python(SYMPY_DURING_A_TRACE) == "True True"


def _conv_cases():
    """Every combination of stride, padding, dilation, groups, output padding and a small
    map that torch accepts or refuses, for both convolutions."""
    for transposed in (False, True):
        for stride, padding, dilation in itertools.product((1, 2, 3), (0, 1, 2), (1, 2)):
            for groups, kernel, size in itertools.product((1, 2), (1, 3, 4), (1, 3, 8)):
                for extra in ((0, 1, 2) if transposed else (0,)):
                    yield transposed, stride, padding, dilation, groups, kernel, size, extra


def _convolve(transposed, stride, padding, dilation, groups, kernel, size, extra, width=4):
    x = torch.zeros(2, width, size, size + 1, device="meta")
    if transposed:
        weight = torch.zeros(4, 6 // groups, kernel, kernel, device="meta")
        return F.conv_transpose2d(x, weight, torch.zeros(6, device="meta"), stride, padding,
                                  extra, groups, dilation)
    weight = torch.zeros(6, 4 // groups, kernel, kernel, device="meta")
    return F.conv2d(x, weight, None, stride, padding, dilation, groups)


def _outcome(call):
    try:
        return tuple(call().shape)
    except RuntimeError:
        return "refused"


def test_shape_only_convolutions_agree_with_torch_meta_kernels():
    from yolodiag.build.meta import shape_only

    cases = list(_conv_cases())
    expected = [_outcome(lambda c=c: _convolve(*c)) for c in cases]
    with shape_only(torch.device("meta")):
        got = [_outcome(lambda c=c: _convolve(*c)) for c in cases]
    assert got == expected
    assert expected.count("refused") > 10 and len(set(expected)) > 30  # both kinds covered


def test_shape_only_convolution_names_both_widths_when_channels_disagree():
    from yolodiag.build.meta import shape_only

    with shape_only(torch.device("meta")):
        for transposed in (False, True):
            try:
                _convolve(transposed, 1, 0, 1, 1, 3, 8, 0, width=5)
            except RuntimeError as e:
                assert "to have 4 channels, but got 5 channels instead" in str(e), e
            else:
                raise AssertionError("a convolution for 4 channels accepted 5 on meta")


def test_shape_only_add_of_equal_maps_keeps_in_place_semantics():
    from yolodiag.build.meta import shape_only

    a, b = (torch.zeros(1, 8, 4, 4, device="meta") for _ in range(2))
    with shape_only(torch.device("meta")):
        assert (a + b).shape == (1, 8, 4, 4) and (a + b) is not a
        c = a
        c += b
        assert c is a
        assert (a * torch.zeros(1, 8, 1, 1, device="meta")).shape == (1, 8, 4, 4)  # broadcast
        try:
            _ = a + torch.zeros(1, 8, 3, 4, device="meta")
        except RuntimeError:
            pass
        else:
            raise AssertionError("maps of different sizes were added on meta")
