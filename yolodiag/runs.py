"""A finished YOLOv5 training run (runs/train/exp), read as plain data: opt.yaml, hyp.yaml and
results.csv (its headers are space-padded), plus the causes its options suggest when the
metrics stayed at zero. Reads files; never loads weights itself (the command does, safely).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolodiag.findings import Unsupported
from yolodiag.shapes import format_runs

FEW_EPOCHS = 30  # training a random backbone for fewer epochs rarely gets past mAP 0


@dataclass
class RunInfo:
    path: str
    opt: dict[str, Any]
    hyp: dict[str, Any]
    rows: list[dict[str, float]] = field(default_factory=list)

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

    @property
    def best_precision(self) -> float:
        return self._best("metrics/precision") or 0.0

    @property
    def best_recall(self) -> float:
        return self._best("metrics/recall") or 0.0

    @property
    def losses_finite(self) -> bool:
        losses = [k for k in (self.rows[0] if self.rows else {}) if k.endswith("_loss")]
        return all(math.isfinite(row[k]) for row in self.rows for k in losses)

    @property
    def weights(self) -> str:
        return str(self.opt.get("weights") or "")

    @property
    def cfg(self) -> str:
        return str(self.opt.get("cfg") or "")

    @property
    def frozen_layers(self) -> list[int]:
        """train.py's `--freeze`: [N] freezes layers 0..N-1, a longer list those indices."""
        freeze = self.opt.get("freeze") or [0]
        freeze = freeze if isinstance(freeze, list) else [freeze]
        return list(freeze) if len(freeze) > 1 else list(range(int(freeze[0])))

    def causes(self, transfer=None) -> list[str]:
        """The likely reasons for zero metrics its options and transfer give, most likely
        first."""
        causes = []
        if self.weights and self.cfg:
            if transfer is not None:
                listed = format_runs(transfer.random_layers()) or "none"
                causes.append(
                    f"--weights {self.weights} with an edited --cfg {self.cfg}: train.py "
                    f"transferred {transfer.transferred}/{transfer.total} items by name and "
                    f"shape, layers {listed} stayed random (YD502/YD503)")
            else:
                causes.append(
                    f"--weights {self.weights} with --cfg {self.cfg}: train.py transfers by name "
                    "and shape, so an edited backbone stays random under a pretrained head "
                    f"(`yolodiag weights {self.cfg} --weights {self.weights}` shows which layers)")
        elif self.weights and not self.cfg:
            causes.append(f"--weights {self.weights} without --cfg: train.py built the "
                          "checkpoint's own YAML, not the edited one (YD501)")
        if self.frozen_layers:
            causes.append(f"--freeze keeps layers {self.frozen_layers[0]}-"
                          f"{self.frozen_layers[-1]} fixed"
                          + (" at random weights" if transfer is not None else ""))
        if self.epochs < FEW_EPOCHS:
            causes.append(f"only {self.epochs} epochs for layers that start random")
        causes.append(f"check the model itself with `yolodiag overfit {self.cfg or 'MODEL.yaml'}`")
        return causes

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "epochs": self.epochs, "weights": self.weights,
                "cfg": self.cfg, "freeze": self.frozen_layers,
                "best_map50": self.best_map50, "best_precision": self.best_precision,
                "best_recall": self.best_recall, "losses_finite": self.losses_finite,
                "results": self.rows}


def read_run(folder: str | Path) -> RunInfo:
    """opt.yaml, hyp.yaml and results.csv of a run folder; InputRefused when it is not one."""
    import yaml

    folder = Path(folder)
    results = folder / "results.csv"
    if not results.is_file():
        raise Unsupported(f"{folder}: no results.csv, so not a YOLOv5 training run (pass a "
                          "runs/train/exp folder)")
    opt = _yaml(folder / "opt.yaml", yaml)
    hyp = _yaml(folder / "hyp.yaml", yaml) or (opt.get("hyp") if isinstance(opt.get("hyp"),
                                                                         dict) else {})
    with results.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        rows = [{name: _float(value) for name, value in zip(header, row)}
                for row in reader if row]
    return RunInfo(str(folder), opt, hyp, rows)


def _yaml(path: Path, yaml) -> dict:
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _float(value: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        return math.nan
