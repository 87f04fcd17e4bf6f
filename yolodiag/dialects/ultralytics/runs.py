"""A finished Ultralytics 8.4.190 training run (runs/detect/<name>): args.yaml and results.csv,
read into the shared `RunInfo` (`dialects/common/runs.py`, ranking the causes of zero metrics;
`run_files`, locating the cfg, weights and data) with the facts of its trainer (engine/trainer.py).

args.yaml holds every option and hyperparameter; they are stored under the names the shared
code reads: `cfg` is `model` when that is a YAML, `weights` the .pt that is loaded (`model`
when it is one, else `pretrained` when that is a path: `pretrained=True`, the default, loads
nothing into a YAML model), `batch_size` is `batch`. results.csv's metric columns
`metrics/precision(B)`, `metrics/recall(B)`, `metrics/mAP50(B)`, `metrics/mAP50-95(B)` are
stored as `metrics/precision`, `metrics/recall`, `metrics/mAP_0.5`, `metrics/mAP_0.5:0.95`.

Where its loop differs from YOLOv5's: warm-up lasts round(min(warmup_epochs, epochs - 1) x
batches) iterations with no floor; the accumulation it ramps to is max(round(nbs / batch), 1),
capped at the run's iterations; optimizer=auto picks AdamW at lr0 = round(0.002 x 5 / (4 + nc),
6) for a run of at most 10,000 iterations and starts the biases' warm-up at 0, so no weight
moves at iteration 0; the EMA is updated once per optimiser step, its decay
0.9999 x (1 - exp(-updates / 2000)). Reads files; never loads weights.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from yolodiag.dialects.common import run_files
from yolodiag.dialects.common.run_files import pillow_available, read_results_csv, read_yaml
from yolodiag.dialects.common.runs import RunInfo, RunLayout
from yolodiag.dialects.ultralytics.datapaths import resolve
from yolodiag.dialects.ultralytics.scaling import locate
from yolodiag.findings import Unsupported

__all__ = ["LAYOUT", "RunInfo", "claims", "locate_inputs", "pillow_available", "read_run"]

ARGS_FILE = "args.yaml"
COLUMNS = {"metrics/precision(B)": "metrics/precision", "metrics/recall(B)": "metrics/recall",
           "metrics/mAP50(B)": "metrics/mAP_0.5", "metrics/mAP50-95(B)": "metrics/mAP_0.5:0.95"}
NOMINAL_BATCH = 64  # args nbs
AUTO_SGD_ITERATIONS = 10_000  # optimizer=auto: MuSGD above this many iterations, AdamW below
EMA_DECAY, EMA_TAU = 0.9999, 2000


def claims(folder: Path) -> str | None:
    """Ours when Ultralytics' trainer left its marks: args.yaml (YOLOv5 writes opt.yaml)."""
    if (folder / ARGS_FILE).is_file() and not (folder / "opt.yaml").is_file():
        return f"it holds {ARGS_FILE}, which Ultralytics' trainer writes (and no opt.yaml)"
    return None


def locate_inputs(run: RunInfo, cfg: str | Path | None = None,
                  weights: str | Path | None = None, nc: int | None = None) -> None:
    """The shared search (`run_files.locate_inputs`), a scaled name (yolo11n.yaml, read
    from yolo11.yaml at scale n) counting as found where its family's file is; the data YAML
    read by Ultralytics' `path:` rule."""
    named = cfg is not None and not Path(cfg).is_file() and locate(cfg) is not None
    run_files.locate_inputs(run, None if named else cfg, weights, nc)
    if named:
        run.cfg_path = Path(cfg)
    elif run.cfg_path is None and run.cfg:
        run.cfg_path = next((c for c in (Path(run.cfg), Path(run.path) / run.cfg)
                             if locate(c) is not None), None)


def read_run(folder: str | Path) -> RunInfo:
    """args.yaml and results.csv of a run folder. Unsupported when the folder does not exist
    or holds no args.yaml (the trainer writes it before the first epoch); a missing, empty or
    header-only results.csv is the run's state, not an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise Unsupported(f"{folder}: no such folder (pass an Ultralytics run folder, "
                          "runs/detect/<name>)")
    if not (folder / ARGS_FILE).is_file():
        raise Unsupported(f"{folder}: no {ARGS_FILE}, so not a folder Ultralytics' trainer "
                          "wrote (it writes args.yaml before the first epoch)")
    args = read_yaml(folder / ARGS_FILE)
    return read_results_csv(RunInfo(str(folder), _options(args), _hyperparameters(args), LAYOUT),
                            COLUMNS)


def _options(args: dict) -> dict:
    model, pretrained = str(args.get("model") or ""), args.get("pretrained")
    is_yaml = model.endswith((".yaml", ".yml"))
    weights = model if model.endswith(".pt") else (
        str(pretrained) if isinstance(pretrained, str) and is_yaml else "")
    return {**args, "cfg": model if is_yaml else "", "weights": weights,
            "batch_size": args.get("batch"), "save_dir": args.get("save_dir") or ""}


def _hyperparameters(args: dict) -> dict:
    """args' hyperparameters, warmup_epochs as the trainer caps it (the last epoch is never
    warm-up)."""
    epochs = args.get("epochs") if isinstance(args.get("epochs"), int) else 100
    warmup = args.get("warmup_epochs", 3.0)
    warmup = float(warmup) if isinstance(warmup, (int, float)) else 3.0
    return {**args, "warmup_epochs": min(warmup, max(epochs - 1, 0)), "epochs": epochs}


def _accumulate_to(run: RunInfo) -> int | None:
    batch = run.opt.get("batch_size")
    if not isinstance(batch, int) or batch < 1 or not run.train_images:
        return None
    return _accumulation(run, min(batch, run.train_images), run.hyp["epochs"])


def _accumulation(run: RunInfo, batch: int, epochs: int) -> int:
    """max(round(nbs / batch), 1) batches per step, at most the iterations of `epochs`."""
    nominal = run.hyp.get("nbs") if isinstance(run.hyp.get("nbs"), int) else NOMINAL_BATCH
    return min(max(round(nominal / batch), 1), math.ceil(run.train_images / batch) * epochs)


def _lr0(run: RunInfo) -> tuple[float, str]:
    """The weights' initial learning rate and where it came from."""
    lr0 = float(run.hyp.get("lr0", 0.01))
    if str(run.opt.get("optimizer", "auto")).lower() != "auto" or run.nc is None:
        return lr0, f"lr0 {lr0:g}"
    plan = run.schedule
    iterations = (math.ceil(plan.train_images / max(plan.requested_batch, NOMINAL_BATCH))
                  * run.hyp["epochs"]) if plan else 0
    if iterations > AUTO_SGD_ITERATIONS:
        return 0.01, "optimizer=auto's MuSGD lr 0.01"
    fitted = round(0.002 * 5 / (4 + run.nc), 6)
    return fitted, f"optimizer=auto's AdamW lr {fitted:g} (0.002 x 5 / (4 + nc {run.nc}))"


def _lr_at(run: RunInfo, ni: int, lr0: float) -> float:
    """The weights' learning rate at iteration `ni`: the epoch's lr0 x lf(epoch), reached
    from 0 by the warm-up's linear ramp."""
    plan = run.schedule
    epoch, epochs, lrf = ni // plan.batches_per_epoch, run.hyp["epochs"], run.hyp.get("lrf", 0.01)
    if run.hyp.get("cos_lr"):
        factor = ((1 - math.cos(epoch * math.pi / epochs)) / 2) * (lrf - 1) + 1
    else:
        factor = max(1 - epoch / epochs, 0) * (1.0 - lrf) + lrf
    target, warmup = lr0 * factor, plan.warmup_iterations
    return target if not warmup or ni > warmup else target * ni / warmup


def _warmup_cause(run: RunInfo) -> tuple[str, str] | None:
    """The optimiser steps the run took and the learning rate of each: a run whose steps all
    came at learning rate 0 changed no weight, whatever it printed. None for a run that took
    ten or more steps at a learning rate above 0 and passed its warm-up."""
    plan = run.schedule
    if plan is None:
        return None
    steps = plan.step_iterations()
    lr0, origin = _lr0(run)
    rates = [_lr_at(run, ni, lr0) for ni in steps]
    if steps and max(rates) > 0 and not (plan.ended_in_warmup or len(steps) < 10):
        return None
    shown = ", ".join(f"iteration {ni} at lr {rate:.3g}" for ni, rate in
                      list(zip(steps, rates))[:4]) + (" ..." if len(steps) > 4 else "")
    parts = [f"{plan.epochs_done} epochs x {plan.batches_per_epoch} batches "
             f"({plan.train_images} train images, batch {plan.batch_size}) = {plan.iterations} "
             f"iterations, a step every {plan.nominal_accumulation:g} batches after the warm-up "
             f"of {plan.warmup_iterations} iterations: {_count(len(steps), 'optimiser step')} "
             f"({shown}, from {origin})"]
    if steps and max(rates) == 0:
        auto = ", and optimizer=auto the biases" if str(run.opt.get("optimizer", "auto")) == \
            "auto" else ""
        parts.append(f"no weight moved: every step came at learning rate 0 (the warm-up starts "
                     f"the weights at 0{auto})")
    unchanged = _unchanged_validation(run)
    if unchanged:
        parts.append(f"the validation losses are the same in every epoch ({unchanged}): the "
                     "model validated never changed")
    if len(steps) < EMA_TAU:
        decay = EMA_DECAY * (1 - math.exp(-len(steps) / EMA_TAU))
        parts.append(f"the EMA that validation scores was updated {_count(len(steps), 'time')} "
                     f"(decay {decay:.2g} at its last update: it is mostly the weights of step "
                     f"{len(steps)})")
    longer = dataclasses.replace(plan, epochs_done=100, warmup_epochs=min(
        float(run.opt.get("warmup_epochs", 3.0)), 99),
        accumulate_to=_accumulation(run, plan.batch_size, 100))
    parts.append(f"to learn, train longer (epochs=100 would take "
                 f"{_count(longer.optimizer_steps, 'step')}), or pass nbs={plan.batch_size} to "
                 "step after every batch")
    return "warmup", "; ".join(parts)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _unchanged_validation(run: RunInfo) -> str:
    losses = [k for k in (run.rows[0] if run.rows else {}) if k.startswith("val/")]
    if len(run.rows) < 2 or not losses:
        return ""
    if all(row.get(k) == run.rows[0].get(k) for row in run.rows for k in losses):
        return ", ".join(f"{k.split('/')[-1]} {run.rows[0][k]:.4g}" for k in losses)
    return ""


def _family_causes(run: RunInfo) -> list[tuple[str, str]]:
    """AMP on a GPU, mosaic closed from the start, the data YAML's `path:` reading."""
    causes = []
    if run.opt.get("amp") and str(run.opt.get("device")) not in ("cpu", "mps"):
        causes.append(("amp", "amp=True: Ultralytics' check_amp turns AMP off on the GPUs it "
                              "knows fail (GTX 16xx, T400 ...), and elsewhere trusts a test of "
                              "YOLO26n on a bus image, not of this model: NaN or zero losses "
                              "under AMP point there (train again with amp=False)"))
    close, epochs = run.opt.get("close_mosaic"), run.hyp["epochs"]
    if isinstance(close, int) and close >= epochs > 0:
        causes.append(("mosaic", f"close_mosaic {close} >= epochs {epochs}: mosaic was off from "
                                 "the first epoch (no cause of zeros by itself: the images were "
                                 "trained as they are)"))
    if run.data is not None and run.data.located.rule:
        located = run.data.located
        read = (f"; yolodiag read them beside the data YAML, in {located.base}"
                if located.as_meant else "")
        causes.append(("data", f"the data YAML's `path: {located.written}` resolves "
                               f"{located.rule}{read}"))
    return causes


def _no_weights(run: RunInfo) -> str:
    return (f"`model={run.cfg}` with `pretrained={run.opt.get('pretrained')}`: a YAML model "
            "loads weights only when pretrained is a .pt path")


LAYOUT = RunLayout(
    title="Ultralytics",
    results_file="results.csv",
    min_warmup=0,  # round(min(warmup_epochs, epochs - 1) x batches), no floor
    scratch_recipe="Ultralytics' own default is epochs=100 (cfg/default.yaml)",
    scratch_epochs=100,
    imgsz_key="imgsz",
    lr_column="lr/pg0",  # the decayed weights' group
    family_causes=_family_causes,
    warmup_cause=_warmup_cause,
    accumulate_to=_accumulate_to,
    no_weights=_no_weights,
    data_path_rule=resolve,
    trainer="Ultralytics' trainer",
    weights_flag="pretrained=",
    cfg_flag="model=",
    without_cfg="as the model (`model=` a .pt)",
)
