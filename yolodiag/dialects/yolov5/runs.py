"""A finished YOLOv5 training run (runs/train/exp): opt.yaml, hyp.yaml and results.csv (its
headers are space-padded), read into the shared `RunInfo` (`dialects/common/runs.py`, which
ranks the causes of zero metrics; `run_files` finds the files opt.yaml names) with v7.0's
train.py loop. Reads files; never loads weights itself (the command does, safely).
"""

from __future__ import annotations

from pathlib import Path

from yolodiag.dialects.common.run_files import (
    locate_inputs,
    open_run,
    pillow_available,
    read_results_csv,
    read_yaml,
)
from yolodiag.dialects.common.runs import RunInfo, RunLayout
from yolodiag.schedule import MIN_WARMUP_ITERATIONS

__all__ = ["LAYOUT", "RunInfo", "claims", "locate_inputs", "pillow_available", "read_run"]

# YOLOv5's released models were trained from scratch for 300 epochs on COCO (its README's
# training command: `--weights '' --epochs 300`); random layers get that long there.
SCRATCH_EPOCHS = 300

LAYOUT = RunLayout(
    title="YOLOv5",
    results_file="results.csv",
    min_warmup=MIN_WARMUP_ITERATIONS,
    scratch_recipe=(f"YOLOv5 trains its released models from scratch for {SCRATCH_EPOCHS} "
                    "epochs (on COCO)"),
    scratch_epochs=SCRATCH_EPOCHS,
    imgsz_key="imgsz",  # train.py's --imgsz, an int (default 640)
    lr_column="x/lr1",
)


def claims(folder: Path) -> str | None:
    """Ours when train.py v7.0 left its marks: a results.csv, or opt.yaml's `imgsz`."""
    if (folder / "results.csv").is_file():
        return "it holds results.csv, which YOLOv5's train.py writes"
    if "imgsz" in read_yaml(folder / "opt.yaml"):
        return "its opt.yaml has YOLOv5's `imgsz`"
    return None


def read_run(folder: str | Path) -> RunInfo:
    """opt.yaml, hyp.yaml and results.csv of a run folder. Unsupported when the folder does
    not exist or holds no opt.yaml (train.py writes it before training starts); a missing,
    empty or header-only results.csv is the run's state, not an error."""
    return read_results_csv(open_run(folder, LAYOUT))
