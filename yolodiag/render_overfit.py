"""Text for an overfit report: the verdict line, the batch's assignment and priors, and the
history of evaluations (loss terms, train-mode and eval-mode P, R, mAP). Reads the report's
`overfit` section (the same data the JSON carries); decides nothing.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from yolodiag.report import Report
from yolodiag.shapes import plain_number


def render_overfit(report: Report, console: Console) -> None:
    fit = report.sections["overfit"]
    h, w = fit["img"]
    settings = fit["settings"]
    amp = f", autocast {fit['amp']}" if fit["amp"] else ""
    console.print(
        f"Trained a copy of the model on {fit['batch']} {report.batch_source} {h}x{w} "
        f"({fit['targets']} objects) on {fit['device']}{amp}: {fit['optimizer']}, "
        f"up to {settings['steps']} steps", highlight=False)
    priors = "; ".join(f"stride {plain_number(p['stride'])} {p['confidence']:.2g}"
                       for p in fit["priors"])
    strides = ", ".join(str(plain_number(p["stride"])) for p in fit["priors"])
    unmatched = ("matched by no anchor" if "anchors" in report.dialect.capabilities
                 else "assigned to no cell")
    console.print(
        f"{report.dialect.possessive} assignment of the batch: positives per level (stride "
        f"{strides}) {', '.join(map(str, fit['positives_per_level']))}, {fit['unmatched']} objects "
        f"{unmatched}; confidence priors {priors} (its validation keeps > {settings['conf']})",
        highlight=False)
    console.print("tr: train mode (BatchNorm on the batch's statistics, as the loss sees it); "
                  "ev: eval mode (running statistics, as validation sees it)", highlight=False)
    console.print(history_table(fit))
    for line in _other_views(fit):
        console.print(line, highlight=False)
    console.print(verdict(fit), highlight=False)


def _other_views(fit: dict[str, Any]) -> list[str]:
    """The EMA's and the fused model's last evaluation, for a family that validates those."""
    last = {e["mode"]: e for e in fit["evaluations"]}
    lines = []
    if "ema" in last:
        ema = last["ema"]
        lines.append(f"EMA (what validation scores during training), step {ema['step']}, "
                     f"{fit['ema_updates']} updates: P {ema['precision']:.2f}, R "
                     f"{ema['recall']:.2f}, mAP@0.5 {ema['map50']:.3f}, {ema['above_conf']} "
                     f"predictions above conf")
    if "fused" in last and "eval" in last:
        fused, plain = last["fused"], last["eval"]
        lines.append(f"Fused (BatchNorm folded into the convolutions, as the final validation "
                     f"runs), step "
                     f"{fused['step']}: mAP@0.5 {fused['map50']:.3f} against {plain['map50']:.3f} "
                     f"unfused, {fused['detections']} detections against {plain['detections']}")
    return lines


def verdict(fit: dict[str, Any]) -> str:
    """One line: passed at which step, or how the run ended."""
    seconds = f"{fit['seconds']:.1f} s"
    if fit["seconds_per_step"]:
        seconds += f", {fit['seconds_per_step']:.3f} s/step"
    evaluations = [e for e in fit["evaluations"] if e["mode"] == "eval"]
    last = evaluations[-1]["map50"] if evaluations else 0.0
    left = (f"; eval-mode mAP@0.5 left zero at step {fit['eval_left_zero']}"
            if fit["eval_left_zero"] else "")
    if fit["passed_at"] is not None:
        return (f"Passed at step {fit['passed_at']} ({seconds}): eval-mode mAP@0.5 {last:.3f} >= "
                f"{fit['settings']['pass_mark']}{left}")
    if fit["nonfinite_step"] is not None:
        return f"Stopped at step {fit['nonfinite_step']}: the {fit['nonfinite_what']} is not finite"
    if fit["untrainable"]:
        return "Stopped at step 0: the loss depends on no trainable parameter"
    settings, ran = fit["settings"], len(fit["steps"])
    if fit["stopped"] == "flat":
        return (f"Stopped at step {ran} of {settings['steps']} ({seconds}): the loss stayed "
                f"within {settings['flat_band']:.0%} of its start for {ran} steps")
    if fit["stopped"] == "out-of-reach":
        return (f"Stopped at step {ran} of {settings['steps']} ({seconds}): the loss stopped "
                f"falling and at the fastest rise measured mAP@0.5 reaches at most "
                f"{fit['reach']:.3f} by step {settings['steps']}, below {settings['pass_mark']}")
    return (f"Did not pass in {len(fit['steps'])} steps ({seconds}): eval-mode mAP@0.5 "
            f"{last:.3f} < {fit['settings']['pass_mark']}{left}")


def history_table(fit: dict[str, Any]) -> Table:
    """One row per evaluated step: the loss terms of that step and both modes' scores."""
    losses = {s["step"]: s for s in fit["steps"]}
    by_step: dict[int, dict[str, dict]] = {}
    for e in fit["evaluations"]:
        by_step.setdefault(e["step"], {})[e["mode"]] = e
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    names = ("loss", *fit["terms"])
    for header in (*("step", *names), "tr P", "tr R", "tr mAP50", "ev P", "ev R", "ev mAP50",
                   "ev mAP", "> conf"):
        table.add_column(header, justify="right", no_wrap=True)
    for step, modes in by_step.items():
        terms = losses.get(step)
        train, evaluated = modes.get("train"), modes.get("eval")
        table.add_row(
            str(step), *(f"{terms[k]:.3g}" if terms else "-" for k in names),
            *_scores(train, ("precision", "recall", "map50")),
            *_scores(evaluated, ("precision", "recall", "map50", "map")),
            str(evaluated["above_conf"]) if evaluated else "-")
    return table


def _scores(evaluation: dict | None, keys: tuple[str, ...]) -> list[str]:
    return [f"{evaluation[k]:.2f}" if evaluation else "-" for k in keys]
