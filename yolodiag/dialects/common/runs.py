"""A finished training run (runs/train/exp) of a YOLOv5-lineage train.py, read as plain data,
whatever the family: its options, hyperparameters and per-epoch results under the column names
the checks read (`train/box_loss`, `metrics/precision`, `metrics/mAP_0.5`...), with the files
its options name (found by `run_files`); and the causes the evidence gives when its metrics
stayed at zero, ranked. What differs between families (the results file, the warm-up's floor,
the step rule, the recipe a scratch run is measured against, extra causes, the words for its
options) is one `RunLayout` value each dialect's `runs` module supplies, with its results
file's parser. Reads files; never loads weights (the command does, safely).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolodiag.findings import REGISTRY, Finding, Severity, Stage
from yolodiag.schedule import Schedule, schedule
from yolodiag.shapes import format_runs

if TYPE_CHECKING:
    from yolodiag.data import DataInfo


@dataclass(frozen=True)
class RunLayout:
    """What one family's train.py writes into a run folder and decides about its loop."""

    title: str  # "YOLOv5": "pass a YOLOv5 run folder", "no YOLOv5 checkout around the folder"
    results_file: str  # "results.csv": where a row per finished epoch goes
    min_warmup: int  # the warm-up lasts at least this many iterations
    scratch_recipe: str  # how long the family's released models trained from scratch, in words
    scratch_epochs: int = 300  # ... in epochs: a shorter scratch run is a cause
    steps_on_multiples: bool = False  # Schedule's step rule (see yolodiag.schedule)
    imgsz_key: str = "imgsz"  # opt.yaml's training size (an int, or a [train, test] list)
    default_imgsz: int = 640  # train.py's default for it
    lr_column: str | None = None  # a results column with the weights' learning rate, if any
    honours_data_path: bool = True  # whether train.py resolves the data YAML's `path:`
    # The family's own causes (kind, text), ranked after the cfg's findings.
    family_causes: Callable[[RunInfo], list[tuple[str, str]]] = lambda run: []
    # The family's own reading of the iterations against its warm-up, ranked first (None:
    # the YOLOv5-lineage one below); its accumulation target (see Schedule.accumulate_to).
    warmup_cause: Callable[[RunInfo], tuple[str, str] | None] | None = None
    accumulate_to: Callable[[RunInfo], int | None] = lambda run: None
    no_weights: Callable[[RunInfo], str] = lambda run: "--weights ''"  # ... in its options
    data_path_rule: Callable | None = None  # its reading of `path:` (Dialect.data_path_rule)
    # Who trained, and how its options name the weights and the cfg, in words.
    trainer: str = "train.py"
    weights_flag: str = "--weights "
    cfg_flag: str = "--cfg "
    without_cfg: str = "without --cfg"


@dataclass
class RunInfo:
    """The run as its files give it, plus what the post-mortem found beside it: the checkout
    root train.py ran in, the cfg, weights and data YAML it named, the class count the model
    was built with and where that came from, and the cfg's own check findings."""

    path: str
    opt: dict[str, Any]
    hyp: dict[str, Any]
    layout: RunLayout
    rows: list[dict[str, float]] = field(default_factory=list)
    results: str = "ok"  # "ok" | "missing" (no results file) | "empty" | "header-only"
    root: Path | None = None
    cfg_path: Path | None = None
    weights_path: Path | None = None
    data_path: Path | None = None
    data: DataInfo | None = None
    data_note: str = ""  # why the data YAML was not read, when it was not
    nc: int | None = None
    nc_source: str = ""
    cfg_findings: list[Finding] = field(default_factory=list)
    transfer_note: str = ""  # why the transfer was not simulated, when the command says why

    @property
    def epochs(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[float]:
        return [row[name] for row in self.rows if name in row]

    def _best(self, name: str) -> float | None:
        values = [v for v in self.column(name) if math.isfinite(v)]
        return max(values) if values else None

    @property
    def best_map50(self) -> float | None:
        return self._best("metrics/mAP_0.5")

    best_precision = property(lambda self: self._best("metrics/precision") or 0.0)
    best_recall = property(lambda self: self._best("metrics/recall") or 0.0)

    @property
    def losses_finite(self) -> bool:
        losses = [k for k in (self.rows[0] if self.rows else {}) if k.endswith("_loss")]
        return all(math.isfinite(row[k]) for row in self.rows for k in losses)

    weights = property(lambda self: str(self.opt.get("weights") or ""))
    cfg = property(lambda self: str(self.opt.get("cfg") or ""))

    @property
    def imgsz(self) -> int:
        size = self.opt.get(self.layout.imgsz_key)
        size = size[0] if isinstance(size, list) and size else size  # [train, test]
        return size if isinstance(size, int) and size > 0 else self.layout.default_imgsz

    @property
    def results_path(self) -> Path:
        return Path(self.path) / self.layout.results_file

    @property
    def looked_in(self) -> str:
        """Where opt.yaml's relative paths were looked for, in words."""
        if self.root is None:
            return (f"in the working directory or beside the run (no {self.layout.title} "
                    "checkout around the folder: it is not at opt.yaml's save_dir)")
        return f"in the checkout {self.root}, the working directory or beside the run"

    @property
    def frozen_layers(self) -> list[int]:
        """train.py's `--freeze`: [N] freezes layers 0..N-1, a longer list those indices."""
        freeze = self.opt.get("freeze") or [0]
        freeze = freeze if isinstance(freeze, list) else [freeze]
        return list(freeze) if len(freeze) > 1 else list(range(int(freeze[0])))

    @property
    def train_images(self) -> int | None:
        """The train split's images train.py keeps (those with corrupt labels dropped)."""
        split = self.data.splits.get("train") if self.data else None
        return len(split.images) - split.dropped if split else None

    @property
    def schedule(self) -> Schedule | None:
        return schedule(self.train_images, self.opt.get("batch_size"),
                        self.hyp.get("warmup_epochs"), self.epochs,
                        min_warmup=self.layout.min_warmup,
                        steps_on_multiples=self.layout.steps_on_multiples,
                        accumulate_to=self.layout.accumulate_to(self))

    def findings_by_code(self, data: bool) -> str:
        """The cfg's check errors and warnings (data=True: those on the data), by code."""
        groups = []
        for severity in (Severity.ERROR, Severity.WARNING):
            counts: dict[str, int] = {}
            for f in self.cfg_findings:
                if f.severity is severity and (_stage(f.code) is Stage.DATA) == data:
                    counts[f.code] = counts.get(f.code, 0) + 1
            if counts:
                groups.append(f"{severity.value}s " + ", ".join(
                    code + (f" x{n}" if n > 1 else "") for code, n in counts.items()))
        return "; ".join(groups)

    def causes(self, transfer=None, width=None) -> list[tuple[str, str]]:
        """(kind, text) of each likely reason for zero metrics, the most evidence first: the
        iterations against the warm-up, random layers against the epochs they need, the cfg's
        own findings, the family's own causes, the transfer, the data; last, the experiment
        that settles the model. `width`: the checkpoint's width against the cfg's
        (checks.width), when they differ."""
        warmup = (self.layout.warmup_cause or RunInfo._warmup_cause)(self)
        causes = [cause for cause in (warmup, self._scratch_cause(transfer)) if cause]
        own = self.findings_by_code(data=False)
        if own:
            causes.append(("cfg", f"the cfg's own findings (`yolodiag check` at {self.imgsz} "
                                  f"with nc={self.nc}): {own}"))
        elif self.cfg_path is None and self.cfg:
            causes.append(("cfg", f"--cfg {self.cfg} not found {self.looked_in}: pass --cfg "
                                  "to check it"))
        causes += self.layout.family_causes(self)
        causes += self._transfer_causes(transfer, width)
        causes.append(("data", self._data_cause()))
        model = self.cfg or "MODEL.yaml"
        data = f" --data {self.data_path}" if self.data else ""
        causes.append(("overfit", f"whether the model can learn at all: `yolodiag overfit "
                                  f"{model}{data} --batch 4`"))
        return causes

    def _warmup_cause(self) -> tuple[str, str] | None:
        plan, floor = self.schedule, self.layout.min_warmup
        if plan is None:
            if self.epochs >= floor:
                return None
            batch = self.opt.get("batch_size")
            unknown = ("the data YAML was not read" if self.data is None
                       else "its train split holds no images" if not self.train_images
                       else f"--batch-size {batch}")
            return ("warmup", f"train.py's warm-up lasts at least {floor} "
                              f"iterations; {self.epochs} epochs pass it only with "
                              f"{math.ceil(floor / max(self.epochs, 1))} or more "
                              f"batches per epoch (batches per epoch unknown: {unknown})")
        done = (f"{plan.epochs_done} epochs x {plan.batches_per_epoch} batches "
                f"({plan.train_images} train images, batch {plan.batch_size}) = "
                f"{plan.iterations} iterations ({plan.optimizer_steps} optimiser steps)")
        warmup = (f"train.py's warm-up of {plan.warmup_iterations} iterations (max(round("
                  f"warmup_epochs {plan.warmup_epochs:g} x {plan.batches_per_epoch}), "
                  f"{floor}))")
        column = self.layout.lr_column
        lr = self._best(column) if column else None
        reached = (f"; {self.layout.results_file}'s weight learning rate {column} peaked at "
                   f"{lr:.3g} against lr0 {self.hyp.get('lr0', 0.01):g}"
                   if lr is not None else "")
        if plan.ended_in_warmup:
            return ("warmup", f"the whole run was warm-up: {done}, all inside {warmup}, so "
                              f"the learning rate never rose to lr0{reached}")
        if plan.warmup_iterations * 2 > plan.iterations:
            return ("warmup", f"most of the run was warm-up: {done}, the first "
                              f"{plan.warmup_iterations} of them in {warmup}")
        return None

    def _scratch_cause(self, transfer) -> tuple[str, str] | None:
        if self.epochs >= self.layout.scratch_epochs:
            return None
        if not self.weights:
            random = f"every layer starts random ({self.layout.no_weights(self)})"
        elif transfer is not None and transfer.random_layers():
            random = f"layers {format_runs(transfer.random_layers())} start random"
        else:
            return None
        return ("scratch", f"{random} and trained {self.epochs} epochs; "
                           f"{self.layout.scratch_recipe}")

    def _transfer_causes(self, transfer, width=None) -> list[tuple[str, str]]:
        causes, by = [], self.layout.trainer
        weights, cfg = (f"{self.layout.weights_flag}{self.weights}",
                        f"{self.layout.cfg_flag}{self.cfg}")
        if self.weights and self.cfg:
            if transfer is not None and width is not None:
                causes.append(("transfer", f"{weights} was trained at width_multiple "
                               f"{width.checkpoint_width:g}, {cfg} builds {width.cfg_width:g}: "
                               f"{by} transferred {transfer.transferred}/{transfer.total} "
                               f"items, {width.counters} of them BatchNorm counters, so "
                               "nothing useful transferred (YD510)"))
            elif transfer is not None:
                listed = format_runs(transfer.random_layers()) or "none"
                shape = sum(k.status == "shape" for k in transfer.keys)
                causes.append(("transfer", f"{weights} with an edited {cfg}: {by} transferred "
                               f"{transfer.transferred}/{transfer.total} items by name and "
                               f"shape, layers {listed} stayed random, {shape} tensors skipped "
                               "for another shape"))
            else:
                unread = self.transfer_note or (
                    f"{'the cfg' if self.cfg_path is None else 'the weights'} not found; "
                    "pass --cfg and --weights")
                causes.append(("transfer", f"{weights} with {cfg}: {by} transfers by name and "
                               "shape, so an edited backbone stays random under a pretrained "
                               f"head (not simulated: {unread})"))
        elif self.weights:
            causes.append(("transfer", f"{weights} {self.layout.without_cfg}: {by} built the "
                                       "checkpoint's own YAML, not the edited one (YD501)"))
        if self.frozen_layers:
            causes.append(("transfer", f"--freeze keeps layers {self.frozen_layers[0]}-"
                                       f"{self.frozen_layers[-1]} fixed"
                                       + (" at random weights" if transfer is not None else "")))
        return causes

    def _data_cause(self) -> str:
        if self.data is None:
            built = (f"the model was built with {self.nc_source}, {self.nc}"
                     if self.nc is not None else "the class count train.py used is unknown")
            return (f"the data YAML {self.opt.get('data') or '(none in opt.yaml)'} was not "
                    f"read ({self.data_note}): {built}")
        findings = self.findings_by_code(data=True)
        train = self.data.splits.get("train")
        objects = train.as_dict()["objects"] if train else 0
        return (f"the data ({self.data_path}): {self.train_images or 0} train images with "
                f"{objects} objects, {self.data.classes} classes; "
                + (findings if findings else "no findings on its labels"))

    def as_dict(self) -> dict[str, Any]:
        plan = self.schedule
        return {"path": self.path, "epochs": self.epochs, "weights": self.weights,
                "cfg": self.cfg, "freeze": self.frozen_layers, "best_map50": self.best_map50,
                "best_precision": self.best_precision, "best_recall": self.best_recall,
                "losses_finite": self.losses_finite, "results": self.rows,
                "results_file": self.layout.results_file, "results_state": self.results,
                "trainer": self.layout.trainer,
                "root": _text(self.root), "cfg_path": _text(self.cfg_path),
                "weights_path": _text(self.weights_path), "data_path": _text(self.data_path),
                "data_note": self.data_note, "nc": self.nc, "nc_source": self.nc_source,
                "imgsz": self.imgsz, "schedule": plan.as_dict() if plan else None,
                "cfg_findings": self.findings_by_code(data=False)}


def _stage(code: str) -> Stage | None:
    info = REGISTRY.get(code)
    return info.stage if info else None


def _text(path: Path | None) -> str | None:
    return str(path) if path is not None else None
