"""gradflow: per-layer gradients of one real YOLOv5 loss backward, the residual split and the
shortcut ablation; the probe leaves the model as it found it; CLI, JSON and plot."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import TINY, shared, validate, write_yaml
from mutants import MUTANTS
from yolodiag import commands
from yolodiag.build.builder import build
from yolodiag.cli import app
from yolodiag.dialects.yolov5.loss import HYP, compute_loss, loss_terms, train_hyp
from yolodiag.gradflow import measure
from yolodiag.spec import parse_spec
from yolodiag.synthetic import synthetic_batch

runner = CliRunner()
# TINY with its C3 (layer 2) replaced by one block, so that layers 0-1 reach the loss only
# through it.
BLOCK_AT_2 = TINY.replace("[-1, 2, C3, [32]],            # 2", "[-1, 1, {block}, [{args}]],  # 2")


def tiny_with(block: str, args: str = "32") -> str:
    return BLOCK_AT_2.format(block=block, args=args)


def built_model(text: str, seed: int = 0, modules=None):
    modules = modules if modules is not None else MUTANTS
    spec = parse_spec(text, "model.yaml", extra_modules=frozenset(modules))
    torch.manual_seed(seed)
    return build(spec, modules=modules)


def batch_for(built, img: int = 128, batch: int = 2):
    return synthetic_batch(built.nc, img, batch, seed=0)


def run_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["gradflow", *args, "-f", "json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


# --- what is measured ----------------------------------------------------------------------


def test_layer_gradients_equal_a_plain_forward_and_backward_of_the_training_loss():
    built = built_model(TINY)
    images, targets = batch_for(built)
    flow = measure(built, images, targets)
    net = built.model.train()
    # train.py's gains for 2 classes at 128 pixels and 2 levels: gradflow's default
    loss, _ = compute_loss(built, net(images), targets, train_hyp(HYP, 2, 128, 2))
    loss.backward()
    assert flow.loss["total"] == pytest.approx(loss.item(), rel=1e-6)
    for layer, module in zip(flow.layers, net.model):
        plain = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in module.parameters()))
        assert layer.grad_norm == pytest.approx(plain, rel=1e-5, abs=1e-12), layer.index


def test_each_loss_term_is_backpropagated_alone():
    built = built_model(TINY)
    images, targets = batch_for(built)
    flow = measure(built, images, targets, HYP, ablate=False)
    net = built.model.train()
    terms = loss_terms(built, net(images), targets, HYP)
    for name, term in zip(("box", "obj", "cls"), terms):
        layer = net.model[3]
        grads = torch.autograd.grad(term * images.shape[0], list(layer.parameters()),
                                    retain_graph=True)
        expected = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
        assert flow.layer(3).components[name] == pytest.approx(expected, rel=1e-5)
    # the total's gradient is the sum of the terms': its norm obeys the triangle inequality
    for layer in flow.layers:
        assert layer.grad_norm <= sum(layer.components.values()) * (1 + 1e-6) + 1e-12


def test_one_class_model_has_no_class_gradient():
    built = built_model(TINY.replace("nc: 2", "nc: 1"))
    flow = measure(built, *batch_for(built), ablate=False)
    assert all(layer.components["cls"] == 0 for layer in flow.layers)
    assert flow.layer(0).components["box"] > 0


def test_stages_group_layers_by_stride_and_the_head_is_last():
    built = built_model(TINY)
    flow = measure(built, *batch_for(built), ablate=False)
    stages = flow.stages()
    assert [s.stride for s in stages] == [2, 4, 8, 16, None]
    assert sorted(i for s in stages for i in s.layers) == list(range(len(flow.layers)))
    assert stages[-1].layers == (8,) and stages[-1].to_head == pytest.approx(1.0)
    norm = math.sqrt(sum(flow.layer(i).grad_norm ** 2 for i in stages[1].layers))
    assert stages[1].grad_norm == pytest.approx(norm)


def test_identity_shortcut_carries_exactly_the_gradient_of_its_add():
    built = built_model(tiny_with("BasicBlock"))
    flow = measure(built, *batch_for(built))
    (add,) = flow.adds
    assert (add.layer, add.block, add.identity, add.measured) == (2, "model.2", True, True)
    assert add.shortcut_grad == add.add_grad > 0
    assert add.branch_grad > 0
    # layer 1's output feeds only the block: its gradient is the two paths' sum
    arriving = flow.layer(1).output_grad
    assert abs(add.shortcut_grad - add.branch_grad) <= arriving * (1 + 1e-5)
    assert arriving <= (add.shortcut_grad + add.branch_grad) * (1 + 1e-5)


def test_projection_shortcut_is_told_apart_from_the_branch():
    built = built_model(tiny_with("BasicBlock", "64"))  # 32 -> 64: a 1x1 projection
    flow = measure(built, *batch_for(built))
    (add,) = flow.adds
    assert not add.identity and add.block_type == "BasicBlock"
    assert add.shortcut_grad > 0 and add.branch_grad > 0
    arriving = flow.layer(1).output_grad
    assert abs(add.shortcut_grad - add.branch_grad) <= arriving * (1 + 1e-5)


def test_c3_bottlenecks_are_residual_blocks_and_the_head_c3_false_is_not():
    text = TINY.replace("[-1, 1, Conv, [64, 1, 1]],                   # 7",
                        "[-1, 1, C3, [64, False]],                    # 7")
    built = built_model(text)
    flow = measure(built, *batch_for(built))
    assert [a.block for a in flow.adds] == ["model.2.m.0", "model.2.m.1"]
    assert not flow.missing_adds  # Bottleneck(shortcut=False) declares no shortcut
    assert flow.ablation.removed == 2 and flow.ablation.layers == (0, 1)


def test_ablation_removes_every_shortcut_and_changes_the_early_gradient():
    built = built_model(tiny_with("BasicBlock"))
    flow = measure(built, *batch_for(built))
    ablation = flow.ablation
    assert ablation.layers == (0, 1) and ablation.removed == 1
    assert ablation.with_shortcuts == pytest.approx(
        math.sqrt(flow.layer(0).grad_norm ** 2 + flow.layer(1).grad_norm ** 2))
    assert ablation.without_shortcuts > 0 and ablation.ratio != pytest.approx(1.0, abs=1e-3)
    assert ablation.loss_without != ablation.loss_with


def test_model_without_residual_blocks_has_no_ablation():
    built = built_model(TINY.replace("[-1, 2, C3, [32]],", "[-1, 1, Conv, [32, 3, 1]],"))
    flow = measure(built, *batch_for(built))
    assert flow.adds == () and flow.ablation is None


def test_dead_units_are_counted_per_activation():
    built = built_model(tiny_with("DeadReluBlock"))
    flow = measure(built, *batch_for(built), ablate=False)
    layer = flow.layer(2)
    assert layer.worst_activation == ("model.2", 24, 32)
    assert layer.dead_units == 24 and layer.relu_units == 64  # with the inner nn.ReLU's 32


# --- the model is left as it was ------------------------------------------------------------


def _state(net: torch.nn.Module):
    return ([b.clone() for b in net.buffers()], [m.training for m in net.modules()],
            [p.requires_grad for p in net.parameters()], [p.grad for p in net.parameters()])


def _assert_same(before, net: torch.nn.Module) -> None:
    buffers, modes, requires, grads = before
    assert all(torch.equal(a, b) for a, b in zip(buffers, net.buffers()))
    assert modes == [m.training for m in net.modules()]
    assert requires == [p.requires_grad for p in net.parameters()]
    assert all(a is b for a, b in zip(grads, [p.grad for p in net.parameters()]))


def test_batchnorm_buffers_flags_requires_grad_and_grads_are_restored_bit_for_bit():
    built = built_model(tiny_with("BasicBlock"))
    net = built.model
    net.eval()
    net.model[3].train()  # mixed modes must come back as they were
    first = next(net.model[0].parameters())
    first.requires_grad_(False)
    last = list(net.parameters())[-1]
    last.grad = torch.full_like(last, 7.0)
    before = _state(net)
    flow = measure(built, *batch_for(built))
    _assert_same(before, net)
    assert flow.layer(0).frozen == ("conv.weight",)
    assert flow.layer(0).grad_norm > 0  # measured anyway


def test_model_is_restored_when_the_measurement_fails(monkeypatch):
    import importlib

    # The loss measure() asks the model's dialect for (YOLOv5's, looked up at each call).
    loss = importlib.import_module("yolodiag.dialects.yolov5.loss")
    built = built_model(TINY)
    before = _state(built.model)

    def broken(*args, **kwargs):
        raise RuntimeError("loss exploded")

    monkeypatch.setattr(loss, "loss_terms", broken)
    with pytest.raises(RuntimeError, match="loss exploded"):
        measure(built, *batch_for(built))
    _assert_same(before, built.model)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in built.model.modules())


# --- findings ---------------------------------------------------------------------------------


def findings_of(tmp_path, text: str):
    report = commands.gradflow(write_yaml(tmp_path, text), (128, 128), modules=MUTANTS)
    return report, {f.code: f for f in report.findings}


def test_detaching_block_names_the_layers_without_gradient_and_where_the_flow_stops(tmp_path):
    report, found = findings_of(tmp_path, tiny_with("DetachingBlock"))
    finding = found["YD601"]
    assert finding.data == {"layers": [0, 1], "stops_at": 2}
    assert "YD606" not in found and "YD603" not in found  # one defect, one finding
    assert report.exit_code == 1


def test_nan_block_is_named_as_the_first_non_finite_output(tmp_path):
    _, found = findings_of(tmp_path, tiny_with("NanBlock"))
    assert found["YD602"].location.layer == 2
    assert set(found) == {"YD602"}


def test_detached_shortcut_and_missing_add_are_residual_path_dead(tmp_path):
    _, found = findings_of(tmp_path, tiny_with("DetachedShortcutBlock"))
    assert found["YD606"].data == {"block": "model.2"}
    assert "shortcut" in found["YD606"].message
    _, found = findings_of(tmp_path, tiny_with("NoAddBlock"))
    assert "declares a shortcut" in found["YD606"].message


def test_sound_models_give_no_gradient_warning_or_error():
    models = [shared("yamls", "stock", name) for name in (
        "yolov5n.yaml", "yolov5s-ghost.yaml", "yolov5s-transformer.yaml", "yolov3-tiny.yaml",
        "yolov5n6.yaml")] + [shared("yamls", "resnet18", "yolov5n-resnet18.yaml"),
                             shared("yamls", "resnet18", "yolov5s-resnet18-fixed.yaml")]
    for path in models:
        report = commands.gradflow(path)
        bad = [f.one_line() for f in report.findings if f.severity.value != "info"]
        assert not bad, path


# --- the command ------------------------------------------------------------------------------


def test_bundled_seed_model_reports_every_layer_stages_and_the_shortcut_ratio():
    code, report = run_json()
    validate(report)
    flow = report["gradflow"]
    assert code == 0 and report["model"]["bundled"]
    assert [layer["index"] for layer in flow["layers"]] == list(range(25))
    assert [s["stride"] for s in flow["stages"]] == [1, 2, 4, 8, 16, None]
    assert [a["block"] for a in flow["residual"]["adds"]] == [f"model.{i}" for i in (1, 3, 5, 7,
                                                                                      9)]
    (gain,) = [f for f in report["findings"] if f["code"] == "YD607"]
    ablation = flow["residual"]["ablation"]
    assert gain["data"]["ratio"] == ablation["ratio"] and ablation["layers"] == [0]
    # Measured at seed 0 on the CPU: with BatchNorm after every convolution, this 5-block
    # backbone gets half the early gradient with its shortcuts that it gets without them.
    assert ablation["ratio"] == pytest.approx(0.50, abs=0.02)


def test_text_report_has_a_row_per_layer_and_the_residual_table(tmp_path):
    result = runner.invoke(app, ["gradflow", str(write_yaml(tmp_path, tiny_with("BasicBlock"))),
                                 "--img", "128"])
    assert result.exit_code == 0, result.output
    for expected in ("|grad|/|w|", "BasicBlock", "Stages", "Residual adds", "identity",
                     "Every shortcut removed", "YD607"):
        assert expected in result.stdout
    assert sum(line.lstrip().startswith(f"{i} ") for i in range(9)
               for line in result.stdout.splitlines()) >= 9


def test_img_is_rounded_up_to_the_largest_stride(tmp_path):
    _, report = run_json(str(write_yaml(tmp_path, TINY)), "--img", "120", "--batch", "1")
    assert report["gradflow"]["img"] == [128, 128] and report["gradflow"]["batch"] == 1


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_writes_a_png_with_a_row_per_layer(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "flow.png"
    result = runner.invoke(app, ["gradflow", str(write_yaml(tmp_path, TINY)), "--img", "128",
                                 "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    width, height = png_size(plot)
    assert width == 900 and height == round((1.6 + 0.24 * 9) * 100)


def test_plot_without_matplotlib_is_one_line_and_exit_2(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    result = runner.invoke(app, ["gradflow", str(write_yaml(tmp_path, TINY)), "--plot",
                                 str(tmp_path / "x.png")])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "yolodiag[plot]" in result.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line_and_exit_2(tmp_path):
    result = runner.invoke(app, ["gradflow", str(write_yaml(tmp_path, TINY)), "--device",
                                 "cuda"])
    assert result.exit_code == 2
    assert "CUDA is not available" in result.stderr and "Traceback" not in result.stderr


def test_device_is_an_argument_all_the_way_down(tmp_path, monkeypatch):
    """`--device cuda` takes this path with "cuda": the model and the batch go where asked."""
    import yolodiag.synthetic

    seen = []
    real_to, real_batch = torch.nn.Module.to, yolodiag.synthetic.synthetic_batch

    def to(module, *args, **kwargs):
        seen.append(("model", str(args[0]) if args else kwargs))
        return real_to(module, *args, **kwargs)

    def batch(*args, device="cpu", **kwargs):
        seen.append(("batch", str(device)))
        return real_batch(*args, device=device, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    monkeypatch.setattr(yolodiag.synthetic, "synthetic_batch", batch)
    report = commands.gradflow(write_yaml(tmp_path, TINY), (64, 64), batch=1, device="cpu:0")
    assert ("model", "cpu:0") in seen and ("batch", "cpu:0") in seen
    assert report.sections["gradflow"]["device"] == "cpu"


def test_segment_head_is_unsupported_with_exit_2(tmp_path):
    text = TINY.replace("[[7, 4], 1, Detect, [nc, anchors]]",
                        "[[7, 4], 1, Segment, [nc, anchors, 32, 64]]")
    result = runner.invoke(app, ["gradflow", str(write_yaml(tmp_path, text))])
    assert result.exit_code == 2 and "Segment" in result.stderr


def test_a_forward_that_fails_at_the_size_asked_names_the_layer_with_exit_2(tmp_path):
    # a fixed-size upsample: fine at 256 (YOLOv5's stride probe), a mismatch at 320
    text = TINY.replace("[-1, 1, nn.Upsample, [None, 2, 'nearest']],  # 5 /8",
                        "[-1, 1, nn.Upsample, [[32, 32], None, 'nearest']],  # 5")
    path = write_yaml(tmp_path, text)
    assert runner.invoke(app, ["gradflow", str(path), "--img", "256"]).exit_code == 0
    result = runner.invoke(app, ["gradflow", str(path), "--img", "320"])
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "layer 6" in result.stderr and "320x320" in result.stderr


def test_unreadable_yaml_is_refused_like_check(tmp_path):
    result = runner.invoke(app, ["gradflow", str(write_yaml(tmp_path, "nc: [")), "-f", "json"])
    assert result.exit_code == 2 and "YD100" in result.stderr


def test_junit_lists_the_gradient_checks_only(tmp_path):
    result = runner.invoke(app, ["gradflow", str(write_yaml(tmp_path, TINY)), "--img", "64",
                                 "-f", "junit"])
    cases = [line for line in result.stdout.splitlines() if "<testcase" in line]
    assert len(cases) == 7 and all("YD60" in case for case in cases)



def test_a_detect_nc_other_than_the_model_nc_is_measured_with_the_head_nc():
    """YD109's model (Detect built for 3 classes in an nc 2 YAML): the loss follows the head,
    as YOLOv5's ComputeLoss does, instead of failing on the map width."""
    path = Path(__file__).parent / "examples" / "YD109" / "bad.yaml"
    report = commands.gradflow(path, (64, 64), batch=1)
    assert report.sections["gradflow"]["layers"] and report.exit_code in (0, 1)
