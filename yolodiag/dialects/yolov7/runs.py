"""A finished YOLOv7 training run (runs/train/exp): opt.yaml, hyp.yaml and results.txt, read
into the shared `RunInfo` (`dialects/common/runs.py`, ranking the causes of zero metrics;
`run_files`, locating the cfg, weights and data) with the facts of YOLOv7's train.py (a207844).

results.txt has no header: one line per finished epoch of 15 whitespace-separated fields,
`epoch/epochs-1`, the GPU memory ("1.23G"), the mean train losses box, obj, cls and their
total, the targets of the last batch, the image size, then validation's P, R, mAP@.5,
mAP@.5:.95 and its box, obj and cls losses. They are stored under the column names the checks
read (YOLOv5's results.csv headers). Where YOLOv7's loop differs from YOLOv5 v7.0's: the
warm-up lasts max(round(warmup_epochs x batches), 1000) iterations, an optimiser step falls on
every iteration divisible by the accumulation, the data YAML's splits are relative to the
folder train.py ran in (it reads no `path:`), and `--hyp` defaults to the P5 models' file even
for yolov7-tiny. Reads files; never loads weights.
"""

from __future__ import annotations

import re
from pathlib import Path

from yolodiag.dialects.common.run_files import (
    locate_inputs,
    open_run,
    pillow_available,
    read_yaml,
)
from yolodiag.dialects.common.runs import RunInfo, RunLayout
from yolodiag.findings import Unsupported

__all__ = ["LAYOUT", "RunInfo", "claims", "locate_inputs", "pillow_available", "read_run"]

RESULTS_FILE = "results.txt"
# results.txt's fields after the epoch, in order, under the names the checks read.
COLUMNS = ("gpu_mem", "train/box_loss", "train/obj_loss", "train/cls_loss", "train/total_loss",
           "labels", "img_size", "metrics/precision", "metrics/recall", "metrics/mAP_0.5",
           "metrics/mAP_0.5:0.95", "val/box_loss", "val/obj_loss", "val/cls_loss")
_EPOCH = re.compile(r"(\d+)/(\d+)")  # "3/299": epoch 3 of 0..299

DEFAULT_HYP = "data/hyp.scratch.p5.yaml"  # train.py's --hyp default, whatever the model
TINY_HYP_FILE = "data/hyp.scratch.tiny.yaml"
# data/hyp.scratch.tiny.yaml where it differs from the P5 file (the rest is equal).
TINY_HYP = {"lrf": 0.01, "cls": 0.5, "obj": 1.0, "translate": 0.1, "scale": 0.5,
            "mixup": 0.05, "paste_in": 0.05}


def _family_causes(run: RunInfo) -> list[tuple[str, str]]:
    """A tiny cfg trained with another hyp file than the tiny one; a data YAML whose `path:`
    train.py ignored."""
    causes = []
    off = {key: run.hyp[key] for key, value in TINY_HYP.items()
           if key in run.hyp and run.hyp[key] != value}
    if "tiny" in Path(run.cfg).name and off:
        hyp = str(run.opt.get("hyp") or DEFAULT_HYP)
        default = " (train.py's default, made for the P5 models)" if hyp == DEFAULT_HYP else ""
        causes.append(("hyp", f"--hyp {hyp}{default} on the tiny cfg {run.cfg}: "
                       + ", ".join(f"{k} {v:g}" for k, v in off.items())
                       + f" where YOLOv7's {TINY_HYP_FILE} has "
                       + ", ".join(f"{k} {TINY_HYP[k]:g}" for k in off)
                       + " (stronger augmentation, slower to learn)"))
    written = read_yaml(run.data_path).get("path") if run.data_path is not None else None
    if written:
        base = run.root or "the working directory"
        causes.append(("data", f"the data YAML {run.data_path} sets `path: {written}`, which "
                               "YOLOv7's train.py does not read: its splits are relative to "
                               f"the folder train.py ran in ({base})"))
    return causes


LAYOUT = RunLayout(
    title="YOLOv7",
    results_file=RESULTS_FILE,
    min_warmup=1000,  # train.py: nw = max(round(warmup_epochs * nb), 1000)
    scratch_recipe=("YOLOv7's README trains its models from scratch (--weights '') for "
                    "train.py's default 300 epochs (on COCO)"),
    scratch_epochs=300,
    steps_on_multiples=True,  # it steps where ni % accumulate == 0
    imgsz_key="img_size",  # --img-size: [train, test]
    lr_column=None,  # results.txt records no learning rate
    honours_data_path=False,
    family_causes=_family_causes,
)


def claims(folder: Path) -> str | None:
    """Ours when YOLOv7's train.py left its marks: a results.txt without a results.csv, or
    opt.yaml's `img_size` list without YOLOv5's `imgsz`."""
    if (folder / RESULTS_FILE).is_file() and not (folder / "results.csv").is_file():
        return f"it holds {RESULTS_FILE} and no results.csv, as YOLOv7's train.py leaves it"
    opt = read_yaml(folder / "opt.yaml")
    if isinstance(opt.get("img_size"), list) and "imgsz" not in opt:
        return "its opt.yaml has YOLOv7's `img_size` list ([train, test]) and no `imgsz`"
    return None


def read_run(folder: str | Path) -> RunInfo:
    """opt.yaml, hyp.yaml and results.txt of a run folder. Unsupported when the folder does
    not exist, holds no opt.yaml, or its results.txt has a line that is not 15 numbers after
    an `epoch/last` field (naming the line); a missing or empty results.txt is the run's
    state (no epoch finished), not an error."""
    run = open_run(folder, LAYOUT)
    path = run.results_path
    if not path.is_file():
        run.results = "missing"
        return run
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise Unsupported(f"{path}: cannot read it: {e}") from e
    run.rows = [_row(path, number, line) for number, line in enumerate(lines, 1)
                if line.strip()]
    run.results = "ok" if run.rows else "empty"
    return run


def _row(path: Path, number: int, line: str) -> dict[str, float]:
    fields = line.split()
    where = f"{path}:{number}"
    if len(fields) != len(COLUMNS) + 1:
        raise Unsupported(f"{where}: {len(fields)} fields where YOLOv7's train.py writes "
                          f"{len(COLUMNS) + 1} (epoch/last, gpu_mem, 4 train losses, labels, "
                          "img_size, P, R, mAP@.5, mAP@.5:.95, 3 val losses)")
    epoch = _EPOCH.fullmatch(fields[0])
    if epoch is None:
        raise Unsupported(f"{where}: the first field {fields[0]!r} is not `epoch/last`, as "
                          "YOLOv7's train.py writes it (e.g. 0/299)")
    values = [_number(where, name, text.removesuffix("G") if name == "gpu_mem" else text)
              for name, text in zip(COLUMNS, fields[1:])]
    return {"epoch": float(epoch[1]), **dict(zip(COLUMNS, values))}


def _number(where: str, name: str, text: str) -> float:
    try:
        return float(text)  # "nan" included: a diverged loss is the run's fact, not an error
    except ValueError:
        raise Unsupported(f"{where}: {name} is {text!r}, not a number") from None
