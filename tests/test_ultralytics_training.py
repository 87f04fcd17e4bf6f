"""What Ultralytics 8.4.190's trainer does around its loss, as the overfit loop reproduces it:
optimizer=auto's AdamW for a short run, ModelEMA's decay, the bias-prior output, the candidate
count before NMS, and fusing Conv with BatchNorm before the final validation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import shared
from yolodiag.build.builder import build
from yolodiag.dialects.common.conv import Conv
from yolodiag.dialects.ultralytics import evaluation, fuse, trainer
from yolodiag.spec import load_spec


def _yolo11n(nc: int = 80):
    torch.manual_seed(0)
    return build(load_spec(shared("yamls", "ultralytics", "stock", "yolo11.yaml"), scale="n"),
                 nc=nc)


def _perturb_norms(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.rand(shape, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(shape, generator=generator) * 0.4 - 0.2)


def test_auto_optimizer_is_adamw_with_the_fitted_lr_and_three_groups():
    built = _yolo11n(nc=4)
    optimizer, text = trainer.optimizer(built.model, None, 4, 1)
    assert isinstance(optimizer, torch.optim.AdamW)
    lrs = {group["lr"] for group in optimizer.param_groups}
    assert lrs == {0.00125}  # round(0.002 * 5 / (4 + 4), 6)
    decays = [group["weight_decay"] for group in optimizer.param_groups]
    assert decays == [0.0, 5e-4, 0.0]  # biases, weights (batch 1 x accumulate 64 / nbs 64), norms
    assert all(group["betas"] == (0.9, 0.999) for group in optimizer.param_groups)
    counted = sum(len(group["params"]) for group in optimizer.param_groups)
    assert counted == len(list(built.model.parameters()))
    biases = optimizer.param_groups[0]["params"]
    assert all(p.dim() == 1 for p in biases) and "AdamW lr 0.00125" in text
    assert trainer.auto_lr(80) == 0.000119


def test_weight_decay_scales_with_the_batch_as_the_trainer_scales_it():
    built = _yolo11n(nc=4)
    # batch 48: accumulate round(64 / 48) = 1, decay 5e-4 * 48 * 1 / 64
    optimizer, _ = trainer.optimizer(built.model, None, 4, 48)
    assert optimizer.param_groups[1]["weight_decay"] == pytest.approx(3.75e-4)


def test_ema_decay_starts_near_zero():
    assert trainer.ema_decay(1) == pytest.approx(0.9999 * (1 - math.exp(-1 / 2000)))
    assert trainer.ema_decay(300) == pytest.approx(0.13928, abs=1e-5)
    assert trainer.ema_decay(100_000) == pytest.approx(0.9999, abs=1e-8)


def test_prior_output_holds_the_heads_own_biases():
    built = _yolo11n(nc=4)
    head = built.model.head
    grids = [(16, 16), (8, 8), (4, 4)]
    out = trainer.prior_output(built, grids, 2)
    cells = [ny * nx for ny, nx in grids]
    starts = [0, cells[0], cells[0] + cells[1]]
    for level, start in enumerate(starts):
        assert torch.equal(out["scores"][0, :, start],
                           head.cv3[level][-1].bias.detach().float())
        assert torch.equal(out["boxes"][1, :, start], head.cv2[level][-1].bias.detach())
    assert [tuple(f.shape) for f in out["feats"]] == [(2, 64, 16, 16), (2, 128, 8, 8),
                                                      (2, 256, 4, 4)]


def test_candidates_count_cells_whose_best_class_passes_conf():
    decoded = torch.zeros(2, 4 + 3, 5)
    decoded[0, 4, 0] = 0.002
    decoded[0, 6, 0] = 0.5  # the same cell: counted once
    decoded[1, 5, 3] = 0.001  # not above
    decoded[1, 5, 4] = 0.0011
    assert evaluation.candidates(decoded, 0.001) == 2
    rows = torch.tensor([[[0, 0, 1, 1, 0.3, 0], [0, 0, 1, 1, 0.0005, 1]]])
    assert evaluation.candidates(rows, 0.001) == 1


def test_fused_model_predicts_what_the_unfused_one_does():
    built = _yolo11n()
    model = built.model.eval()
    _perturb_norms(model)
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = model(x)[0]
        fused_model = fuse.fuse(model)
        fused = fused_model(x)[0]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused_model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # left alone
    assert (fused - plain).abs().max() <= 1e-4 * plain.abs().max()


class _ScaledConv(Conv):
    """A user's Conv that does more in its forward: fusing replaces that forward."""

    def forward(self, x):
        return 2 * super().forward(x)


def test_fusing_drops_what_a_conv_subclass_adds_to_its_forward():
    block = _ScaledConv(3, 4, 3).eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        before, after = block(x), fuse.fuse(block)(x)
    assert torch.allclose(after * 2, before, atol=1e-5)
    assert not torch.allclose(after, before, atol=1e-3)
