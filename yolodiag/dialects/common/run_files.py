"""The files of a finished run, found and read as its training code read them: the run
folder's options file, the cfg, weights and data YAML those options name (relative to the
checkout train.py ran in, as given, or beside the run), the data YAML by the family's rule
for `path:`, and the class count the model was built with. Fills a `RunInfo`
(`dialects/common/runs.py`); reads files, never loads weights.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolodiag.dialects.common.runs import RunInfo, RunLayout
from yolodiag.findings import Unsupported

if TYPE_CHECKING:
    from yolodiag.data import DataInfo


def open_run(folder: str | Path, layout: RunLayout) -> RunInfo:
    """A run folder's opt.yaml and hyp.yaml, its results not read yet. Unsupported when the
    folder does not exist or holds no opt.yaml (train.py writes it before training starts)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise Unsupported(f"{folder}: no such folder (pass a {layout.title} run folder, "
                          "runs/train/<name>)")
    if not (folder / "opt.yaml").is_file():
        raise Unsupported(f"{folder}: no opt.yaml, so not a folder train.py wrote (it writes "
                          "opt.yaml before the first epoch; pass runs/train/<name>)")
    opt = read_yaml(folder / "opt.yaml")
    hyp = read_yaml(folder / "hyp.yaml") or (opt.get("hyp") if isinstance(opt.get("hyp"),
                                                                           dict) else {})
    return RunInfo(str(folder), opt, hyp, layout)


def locate_inputs(run: RunInfo, cfg: str | Path | None = None,
                  weights: str | Path | None = None, nc: int | None = None) -> None:
    """Fill in the checkout root, the cfg, weights and data YAML (given ones as given: a
    missing --weights or --cfg is Unsupported), and the class count: --nc, else
    --single-cls's 1, else the data's (names win over nc), else the cfg's (stated)."""
    folder = Path(run.path)
    run.root = checkout_root(folder, run.opt)
    for option, given in (("--cfg", cfg), ("--weights", weights)):
        if given is not None and not Path(given).is_file():
            raise Unsupported(f"{option} {given}: no such file")
    run.cfg_path = Path(cfg) if cfg is not None else locate(run.cfg, run.root, folder)
    run.weights_path = (Path(weights) if weights is not None
                        else locate(run.weights, run.root, folder))
    written = str(run.opt.get("data") or "")
    run.data_path = locate(written, run.root, folder)
    if run.data_path is None:
        run.data_note = f"not found {run.looked_in}" if written else "opt.yaml names none"
    else:
        run.data, run.data_note = read_run_data(run.data_path, run.root, nc, run.layout)
    if nc is not None:
        run.nc, run.nc_source = nc, "--nc"
    elif run.opt.get("single_cls"):
        run.nc, run.nc_source = 1, "--single-cls"
    elif run.data is not None and run.data.classes:
        key = "names" if run.data.names else "nc"
        run.nc, run.nc_source = run.data.classes, f"the {key} of {run.data_path}"
    else:
        run.nc_source = "the cfg's nc (the data's class count is unknown)"


def read_run_data(data_yaml: Path, checkout_root: Path | None, nc: int | None,
                  layout: RunLayout) -> tuple[DataInfo | None, str]:
    """The run's data YAML read as train.py read it, or None and why not. The one place `run`
    reads data: `checkout_root` is where train.py ran, which YOLOv5 v7.0 resolves a relative
    `path:` against and YOLOv7 the splits themselves (it reads no `path:`); another family
    reads `path:` by its own rule (`layout.data_path_rule`)."""
    from yolodiag.data import read_data

    try:
        return read_data(data_yaml, nc, root=checkout_root, honour_path=layout.honours_data_path,
                         resolve_path=layout.data_path_rule), ""
    except Unsupported as e:
        return None, str(e)


def checkout_root(folder: Path, opt: dict[str, Any]) -> Path | None:
    """The folder train.py ran in: the run folder less opt.yaml's relative `save_dir`
    (runs/train/<name>), else the parent of a `runs/<task>/<name>` folder; None when neither
    fits."""
    resolved = folder.resolve()
    save_dir = Path(str(opt.get("save_dir") or ""))
    depth = len(save_dir.parts)
    if (save_dir.parts and not save_dir.is_absolute() and len(resolved.parts) > depth
            and resolved.parts[-depth:] == save_dir.parts):
        return resolved.parents[depth - 1]
    if len(resolved.parents) > 2 and resolved.parents[1].name == "runs":
        return resolved.parents[2]
    return None


def locate(name: str, root: Path | None, folder: Path) -> Path | None:
    """A file opt.yaml names: relative to the checkout train.py ran in, as given (or relative
    to the working directory), or beside the run folder."""
    if not name:
        return None
    path = Path(name)
    candidates = [path] if path.is_absolute() else [
        *([root / path] if root else []), path, folder / path, folder / path.name]
    return next((c for c in candidates if c.is_file()), None)


def pillow_available() -> bool:
    """The data's label checks read image sizes with Pillow (the `data` extra)."""
    return importlib.util.find_spec("PIL") is not None


def read_yaml(path: Path) -> dict:
    """A YAML mapping ({} for a missing file or another type); Unsupported, naming the line,
    for one that cannot be read."""
    import yaml

    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise Unsupported(f"{path}{where}: cannot read it: {problem}") from e
    return data if isinstance(data, dict) else {}


def read_results_csv(run: RunInfo, names: dict[str, str] | None = None) -> RunInfo:
    """The run's results.csv (headers space-padded or not; `names`: header -> the name the
    checks read), its rows as numbers (a cell that is none: NaN) and its state: a missing,
    empty or header-only file is the run's state, not an error."""
    results = run.results_path
    if not results.is_file():
        run.results = "missing"
        return run
    names = names or {}
    with results.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [names.get(h.strip(), h.strip()) for h in next(reader, [])]
        run.rows = [{name: _float(value) for name, value in zip(header, row)}
                    for row in reader if row]
    run.results = "ok" if run.rows else ("header-only" if header else "empty")
    return run


def _float(value: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        return math.nan
