"""overfit: a copy of the model memorises one batch, evaluated as val.py would in train and
eval mode; the mutants fail the way the findings say; CLI, JSON, plot, TensorBoard, devices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import TINY, validate, write_yaml
from mutants import MUTANTS
from yolodiag import commands
from yolodiag.build.builder import build
from yolodiag.cli import app
from yolodiag.overfit import FitSettings, overfit, score
from yolodiag.spec import parse_spec
from yolodiag.synthetic import synthetic_batch

runner = CliRunner()
EXAMPLES = Path(__file__).parent / "examples"
BASE = EXAMPLES / "base.yaml"


def codes(report) -> list[str]:
    return [f.code for f in report.findings]


def test_tiny_model_memorises_its_batch_end_to_end():
    report = commands.overfit(BASE, (128, 128))
    fit = report.sections["overfit"]
    assert fit["passed_at"] is not None and fit["passed_at"] < fit["settings"]["steps"]
    last = [e for e in fit["evaluations"] if e["mode"] == "eval"][-1]
    assert last["step"] == fit["passed_at"] and last["map50"] >= 0.5
    assert fit["steps"][-1]["loss"] < 0.5 * fit["steps"][0]["loss"]
    assert report.exit_code == 0 and not report.findings
    validate(report.as_dict())


def test_history_has_every_step_and_both_modes_every_tenth_step():
    report = commands.overfit(BASE, (128, 128), steps=25)
    fit = report.sections["overfit"]
    assert [s["step"] for s in fit["steps"]] == list(range(25))
    evaluated = [(e["step"], e["mode"]) for e in fit["evaluations"]]
    assert evaluated == [(s, m) for s in (0, 10, 20, 25) for m in ("train", "eval")]
    assert fit["positives_per_level"] == [27, 33] and fit["unmatched"] == 0


def test_predictions_are_clipped_to_their_image_before_matching_as_val_py_does():
    """val.py's scale_boxes clips each prediction to its image; IoU is taken on the clipped box.
    A box reaching past the image edge matches a label on that edge exactly once clipped (IoU
    1.0, unclipped 0.4); with a letterbox window the clip is at the window's edge."""
    label = torch.tensor([[0, 0, 0.8, 0.4, 0.4, 0.4]])  # x 60..100, y 20..60 in 100x100
    past_edge = torch.tensor([[[110.0, 40.0, 100.0, 40.0, 0.9, 1.0]]])  # x 60..160
    whole = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    metrics, found = score(past_edge, label, whole, (100, 100), FitSettings())
    assert found == 1 and metrics["map50"] == pytest.approx(0.995) and metrics["map"] > 0.99
    label = torch.tensor([[0, 0, 0.75, 0.4, 0.3, 0.4]])  # x 60..90: the image ends at 90
    metrics, _ = score(past_edge, label, whole, (100, 100), FitSettings())
    assert 0.4 < metrics["map"] < 0.7  # clipped to the whole image: IoU 0.75
    window = torch.tensor([[10.0, 0.0, 90.0, 100.0]])  # letterboxed: grey from x = 90 on
    metrics, _ = score(past_edge, label, window, (100, 100), FitSettings())
    assert metrics["map"] > 0.99


def test_the_callers_model_is_never_trained():
    torch.manual_seed(0)
    built = build(parse_spec(TINY, "tiny.yaml"))
    before = {k: v.clone() for k, v in built.model.state_dict().items()}
    images, targets = synthetic_batch(built.nc, 128, 2, 0)
    history = overfit(built, images, targets, FitSettings(steps=5))
    assert len(history.steps) == 5 and history.steps[-1].loss != history.steps[0].loss
    after = built.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_anchors_in_grid_units_give_no_match_then_cannot_overfit():
    report = commands.overfit(EXAMPLES / "YD701" / "bad.yaml", (128, 128), steps=30)
    found = codes(report)
    assert found.index("YD404") < found.index("YD701")  # check: ordinary objects match none
    # overfit's batch is sized after the anchors: every object matches, but at 1/40 of the
    # image (the smallest ordinary object, 3.2 px) it is still too small to learn
    fit = report.sections["overfit"]
    assert fit["unmatched"] == 0 and fit["passed_at"] is None


def test_detached_head_cannot_lower_the_loss():
    report = commands.overfit(EXAMPLES / "YD702" / "bad.yaml", (128, 128), steps=30,
                              modules=MUTANTS)
    assert {"YD701", "YD702"} <= set(codes(report))
    assert report.sections["overfit"]["untrainable"]


def test_batchnorm_momentum_0_fits_in_train_mode_but_not_in_eval_mode():
    report = commands.overfit(EXAMPLES / "YD704" / "bad.yaml", (128, 128), steps=120,
                              modules=MUTANTS)
    (mismatch,) = [f for f in report.findings if f.code == "YD704"]
    assert mismatch.data["train_map50"] >= 0.5 > mismatch.data["eval_map50"]


def test_float16_overflow_under_amp_is_named_with_its_step(monkeypatch):
    import yolodiag.overfit

    # CUDA's --amp (float16 and a GradScaler), run on the CPU: only the device differs.
    monkeypatch.setattr(yolodiag.overfit, "autocast_dtype", lambda device: torch.float16)
    path = EXAMPLES / "YD703" / "bad.yaml"
    report = commands.overfit(path, (64, 64), steps=5, amp=True, modules=MUTANTS)
    (overflow,) = [f for f in report.findings if f.code == "YD703"]
    assert overflow.data == {"step": 0, "what": "loss", "amp": "float16"}
    assert "YD703" not in codes(commands.overfit(path, (64, 64), steps=5, modules=MUTANTS))


def test_amp_on_the_cpu_is_bfloat16_and_trains():
    report = commands.overfit(BASE, (64, 64), steps=3, amp=True)
    fit = report.sections["overfit"]
    assert fit["amp"] == "bfloat16" and len(fit["steps"]) == 3 and fit["nonfinite_step"] is None


def test_stride_4_levels_start_below_the_confidence_threshold():
    report = commands.overfit(EXAMPLES / "YD705" / "bad.yaml", (128, 128), steps=10)
    (below,) = [f for f in report.findings if f.code == "YD705"]
    assert "stride 4: objectness 0.0003" in below.message  # 8 / (640 / 4)^2, plus the init
    assert all(conf < 0.001 for conf in below.data["priors"])


def test_a_model_check_finds_crashing_is_not_trained(tmp_path):
    text = TINY.replace("[[-1, 3], 1, Concat, [1]]", "[[-1, 4], 1, Concat, [1]]")
    report = commands.overfit(write_yaml(tmp_path, text), (128, 128), steps=5)
    assert report.sections["overfit"] is None and "YD303" in codes(report)


def test_device_is_an_argument_all_the_way_down(monkeypatch, tmp_path):
    """`--device cuda:0` on a machine without CUDA: availability is faked, every tensor stays
    on the CPU, and the test checks that the model and the batch were sent to cuda:0."""
    import yolodiag.synthetic

    seen = []
    real_to, real_batch = torch.nn.Module.to, yolodiag.synthetic.synthetic_batch

    def to(module, *args, **kwargs):
        seen.append(("model", str(args[0]) if args else str(kwargs.get("device"))))
        return real_to(module, "cpu")

    def batch(*args, device="cpu", **kwargs):
        seen.append(("batch", str(device)))
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.nn.Module, "to", to)
    monkeypatch.setattr(yolodiag.synthetic, "synthetic_batch", batch)
    result = runner.invoke(app, ["overfit", str(BASE), "--img", "64", "--steps", "2",
                                 "--device", "cuda:0", "-f", "json"])
    assert result.exit_code in (0, 1), result.output
    assert {("model", "cuda:0"), ("batch", "cuda:0")} <= set(seen)
    result = runner.invoke(app, ["overfit", str(BASE), "--device", "cuda:3"])
    assert result.exit_code == 2 and "1 CUDA device" in result.stderr


def test_unknown_device_is_a_usage_error():
    result = runner.invoke(app, ["overfit", str(BASE), "--device", "tpu"])
    assert result.exit_code == 2 and "cpu, cuda or cuda:K" in result.output


def test_plot_and_tensorboard_hold_the_history(tmp_path):
    pytest.importorskip("matplotlib")
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    plot, events = tmp_path / "fit.png", tmp_path / "events"
    result = runner.invoke(app, ["overfit", str(BASE), "--img", "64", "--steps", "12",
                                 "--plot", str(plot), "--tensorboard", str(events)])
    assert result.exit_code == 1, result.output  # 12 steps cannot pass: YD701
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reader = event_accumulator.EventAccumulator(str(events))
    reader.Reload()
    assert [e.step for e in reader.Scalars("train/loss")] == list(range(12))
    assert [e.step for e in reader.Scalars("eval_mode/map50")] == [0, 10, 12]
    for line in ("Trained a copy", "tr mAP50", "Did not pass in 12 steps"):
        assert line in result.stdout
    # stderr is no terminal here: plain progress lines, the estimate after 3 steps
    progress = result.stderr.splitlines()
    assert progress[0].startswith("overfit: step 0/12: mAP@0.5 train ")
    assert progress[1].startswith("overfit: up to 12 steps x ") and "s/step measured" in progress[1]
    assert progress[2].startswith("overfit: step 10/12: loss ")


def test_tensorboard_without_the_package_is_one_line_and_exit_2(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    result = runner.invoke(app, ["overfit", str(BASE), "--tensorboard", str(tmp_path / "tb")])
    assert result.exit_code == 2 and "yolodiag[tensorboard]" in result.stderr


def test_a_loss_no_step_can_move_stops_as_flat_after_50_steps():
    report = commands.overfit(BASE, (64, 64), steps=200)
    assert report.sections["overfit"]["stopped"] in ("passed", "budget")  # a sound run
    torch.manual_seed(0)
    built = build(parse_spec(TINY, "tiny.yaml"))
    images, targets = synthetic_batch(built.nc, 64, 1, 0)
    history = overfit(built, images, targets, FitSettings(steps=200, lr=0.0))
    assert history.stopped == "flat" and len(history.steps) == 50


def _history(losses: list[float], maps: dict[int, float], steps: int = 300):
    from yolodiag.overfit import Evaluation, OverfitHistory, StepRecord

    history = OverfitHistory((64, 64), 1, 3, "cpu", None, FitSettings(steps=steps),
                             ("box", "obj", "cls"), "SGD", (3,), 0, (), 1.0)
    history.steps = [StepRecord(i, loss, {"box": 0, "obj": 0, "cls": 0}, 1.0)
                     for i, loss in enumerate(losses)]
    history.evaluations = [Evaluation(step, mode, 0, 0, value, 0, 0, 0)
                           for step, value in maps.items() for mode in ("train", "eval")]
    return history


def test_out_of_reach_needs_half_the_budget_a_stalled_loss_and_a_slow_rise():
    from yolodiag.overfit import _out_of_reach

    stalled = [1.0] * 50 + [0.5] * 110  # fell, then stopped falling for 110 steps
    slow = {s: 0.001 * s for s in range(0, 161, 10)}  # +0.01 per evaluation: 0.16 at 160
    reach = _out_of_reach(_history(stalled, slow), 160)
    assert reach == pytest.approx(0.16 + 0.01 * 14)  # 14 evaluations left
    assert _out_of_reach(_history(stalled, slow, steps=400), 160) is None  # before half
    assert _out_of_reach(_history(stalled, slow, steps=160), 160) is None  # the budget ended
    falling = [1.0 - 0.004 * i for i in range(160)]
    assert _out_of_reach(_history(falling, slow), 160) is None  # the loss still falls
    jump = {**slow, 160: 0.4}  # one rise of 0.24: 0.4 + 0.24 * 14 could pass
    assert _out_of_reach(_history(stalled, jump), 160) is None


def test_killed_halfway_the_event_files_keep_the_curves_so_far(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    from yolodiag.events import OverfitEvents

    events = OverfitEvents(tmp_path)

    def killed_at_step_15(history):
        events(history)
        if len(history.steps) == 15:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    built = build(parse_spec(TINY, "tiny.yaml"))
    images, targets = synthetic_batch(built.nc, 64, 1, 0)
    with pytest.raises(KeyboardInterrupt):
        overfit(built, images, targets, FitSettings(steps=100), killed_at_step_15)
    reader = event_accumulator.EventAccumulator(str(tmp_path))  # the writer was never closed
    reader.Reload()
    assert [e.step for e in reader.Scalars("train/loss")] == list(range(15))
    assert [e.step for e in reader.Scalars("train_mode/map50")] == [0, 10]
