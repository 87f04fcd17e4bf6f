"""Text for the weights and run reports: the checkpoint read, train.py's `Transferred X/Y`
line with the per-layer transfer, and a finished run's metrics per epoch. Reads the reports'
`checkpoint`, `transfer` and `run` sections (the data the JSON carries); decides nothing.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from yolodiag.report import Report


def render_transfer(report: Report, console: Console) -> None:
    checkpoint, transfer = report.sections.get("checkpoint"), report.sections.get("transfer")
    if checkpoint:
        extras = ", ".join(name for name, present in (("optimizer", checkpoint["optimizer"]),
                                                       ("EMA", checkpoint["ema"])) if present)
        console.print(
            f"Checkpoint {checkpoint['path']}: {checkpoint['layout']}, {checkpoint['tensors']} "
            f"tensors{' in half precision' if checkpoint['half'] else ''}, epoch "
            f"{checkpoint['epoch']}{', with ' + extras if extras else ''}; read without running "
            "anything in it", highlight=False)
    if transfer:
        built = (f"the YAML given {transfer.get('with_cfg', 'with --cfg')}"
                 if transfer["cfg_given"] else "the checkpoint's embedded YAML")
        console.print(f"{transfer.get('trainer', 'train.py')} builds {built} with "
                      f"nc={transfer['nc']} and logs: "
                      f"[bold]{transfer['log']}[/]", highlight=False)
        console.print(transfer_table(transfer["layers"]))


def transfer_table(layers: list[dict[str, Any]]) -> Table:
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("layer", "transferred", "skipped (why)"):
        table.add_column(header, justify="right" if header != "skipped (why)" else "left")
    for layer in layers:
        table.add_row(str(layer["layer"]), f"{layer['transferred']}/{layer['total']}",
                      _skipped(layer["skipped"]))
    return table


def _skipped(skipped: list[dict[str, Any]]) -> str:
    """Shape differences one by one (three at most), the other reasons counted."""
    shapes = [s for s in skipped if s["why"] == "shape"]
    parts = [f"{s['key'].split('.', 2)[-1]} {'x'.join(map(str, s['model_shape']))} vs "
             f"{'x'.join(map(str, s['checkpoint_shape']))}" for s in shapes[:3]]
    if len(shapes) > 3:
        parts.append(f"{len(shapes) - 3} more of another shape")
    for why, words in (("missing", "not in the checkpoint"), ("excluded", "excluded"),
                       ("copied", "copied with the checkpoint's class branch (not counted)")):
        count = sum(s["why"] == why for s in skipped)
        if count:
            parts.append(f"{count} {words}")
    return "; ".join(parts)


def render_run(report: Report, console: Console) -> None:
    run = report.sections["run"]
    console.print(f"{run['epochs']} epochs from --weights {run['weights'] or '(none)'} with "
                  f"--cfg {run['cfg'] or '(none)'}", highlight=False)
    found = ", ".join(f"{what} {run[key]}" for what, key in (
        ("cfg", "cfg_path"), ("weights", "weights_path"), ("data", "data_path")) if run.get(key))
    trainer = run.get("trainer", "train.py")
    console.print(f"folder {trainer} ran in: {run.get('root') or 'unknown'}; found "
                  f"{found or 'none of the files its options name'}", highlight=False)
    nc = run.get("nc")
    console.print("classes: " + (f"nc={nc} from {run.get('nc_source')}" if nc is not None
                                 else "unknown (no --nc, no data YAML read, no cfg built)")
                  + (f" (data YAML not read: {run['data_note']})" if run.get("data_note")
                     else ""), highlight=False)
    plan = run.get("schedule")
    if plan:
        inside = "ended inside it" if plan["ended_in_warmup"] else "passed it"
        console.print(
            f"iterations: {plan['train_images']} train images in batches of "
            f"{plan['batch_size']} = {plan['batches_per_epoch']} per epoch; "
            f"{plan['epochs_done']} epochs = {plan['iterations']} iterations "
            f"({plan['optimizer_steps']} optimiser steps); {trainer}'s warm-up lasts "
            f"{plan['warmup_iterations']} iterations: the run {inside}", highlight=False)
    if run.get("results_state", "ok") != "ok":
        console.print(f"{run.get('results_file', 'results.csv')}: {run['results_state']}",
                      highlight=False)
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    logged = set().union(*run["results"]) if run["results"] else {"train/obj_loss"}
    columns = [name for name in ("epoch", "train/box_loss", "train/obj_loss", "train/cls_loss",
                                 "train/dfl_loss", "metrics/precision", "metrics/recall",
                                 "metrics/mAP_0.5", "metrics/mAP_0.5:0.95")
               if name in logged or name not in ("train/obj_loss", "train/dfl_loss")]
    for name in columns:
        table.add_column(name.split("/")[-1], justify="right")
    for row in run["results"]:
        table.add_row(*(f"{row[name]:.4g}" if name in row else "-" for name in columns))
    console.print(table)
