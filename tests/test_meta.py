"""Shape-only forwards on the meta device leave torch as they found it."""

from __future__ import annotations

import subprocess
import sys

import torch

from conftest import TINY
from yolodiag.build.builder import build
from yolodiag.spec import parse_spec
from yolodiag.trace import trace

AFTER_A_META_TRACE = """
import sys, torch
from yolodiag.build.builder import build
from yolodiag.spec import parse_spec
from yolodiag.trace import trace
import conftest
trace(build(parse_spec(conftest.TINY), device="meta"), [(64, 64)])
assert "torch._dynamo" not in sys.modules, "the trace imported torch._dynamo"
assert "_dynamo" not in torch.__dict__
y = torch.zeros(2, 3, device="meta") + 1  # a Python meta kernel outside the trace
import torch._dynamo
assert hasattr(torch._dynamo, "optimize"), "the stand-in is still there"
print(torch.compile(lambda x: x * 2, backend="eager")(torch.ones(2)).tolist())
"""


def test_meta_trace_skips_the_dynamo_import_and_restores_torch():
    out = subprocess.run([sys.executable, "-c", AFTER_A_META_TRACE], capture_output=True,
                         text=True, cwd=__file__.rsplit("/", 1)[0])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[2.0, 2.0]"


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
    out = subprocess.run([sys.executable, "-c", HANDS_OVER], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


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
