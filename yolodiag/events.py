"""TensorBoard event files of an overfit report (tensorboard is an optional extra).

Scalars per step: the loss and its terms and the gradient norm; per evaluation: P, R,
mAP@0.5 and mAP@0.5:0.95 in train and eval mode. Written from the report's data after the
run, so the files hold exactly what the text and JSON say.
"""

from __future__ import annotations

from pathlib import Path

from yolodiag.report import Report


def write_overfit_events(report: Report, folder: str | Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    fit = report.sections["overfit"]
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for step in fit["steps"]:
            for key in ("loss", "box", "obj", "cls"):
                writer.add_scalar(f"train/{key}", step[key], step["step"])
            writer.add_scalar("train/grad_norm", step["grad_norm"], step["step"])
        for evaluation in fit["evaluations"]:
            for key in ("precision", "recall", "map50", "map"):
                writer.add_scalar(f"{evaluation['mode']}_mode/{key}", evaluation[key],
                                  evaluation["step"])
    finally:
        writer.close()
