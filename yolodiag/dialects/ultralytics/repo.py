"""`--repo` for Ultralytics: the model the user's own Ultralytics builds (`DetectionModel(yaml,
nc=...)` of its `ultralytics/nn/tasks.py`), read with our module table. The worker protocol and
the reading of its result are family-neutral (`dialects/common/repo.py`, which explains them).

Ultralytics is a package: `--repo pip` (or `ultralytics`) builds with the one installed in the
`--repo-python` interpreter; `--repo DIR` with a checkout (DIR holds `ultralytics/nn/tasks.py`,
as a clone of the repository or a site-packages folder does) or the package folder itself.
"""

from __future__ import annotations

from pathlib import Path

from yolodiag.dialects.common.repo import Located, RepoBuild, run_worker, traced

__all__ = ["TASKS", "build_with_repo", "is_checkout", "repo_traced"]

TASKS = Path("ultralytics", "nn", "tasks.py")  # where parse_model and DetectionModel live
MODULE = "ultralytics.nn.tasks"
INSTALLED = ("pip", "ultralytics")  # --repo values naming the installed package
# Our rules for what their parse_model did with a class of theirs (common/repo.py's as_built).
RULE_NAMES = {"channels": "completed", "channels+repeats": "completed+repeats",
              "detect": "anchor-free-detect"}


def is_checkout(folder: str | Path) -> bool:
    """Whether `folder` holds an Ultralytics package (`ultralytics/nn/tasks.py`)."""
    return (Path(folder) / TASKS).is_file()


def build_with_repo(repo: str | Path, yaml_path: str | Path, sizes: list[tuple[int, int]],
                    names: list[str], nc: int | None = None, python: str | None = None,
                    timeout: float = 600) -> RepoBuild:
    """Build `yaml_path` with the Ultralytics at `repo` in a subprocess running `python`.
    Their code failing to import, build or run comes back in `failure`; raises Unsupported
    when `repo` is no Ultralytics, or when the subprocess ends without a result."""
    return run_worker(_locate(repo), yaml_path, sizes, names, nc, python, timeout)


def repo_traced(path: Path, requested: tuple, sizes: list[tuple[int, int]], repo: str | Path,
                python: str | None, nc: int | None = None, dialect: str = "auto"):
    """(Facts, refusal or None) as commands._traced gives them, with the model built and traced
    by the user's Ultralytics at `sizes` (see common/repo.py's `traced`)."""
    from yolodiag.dialects.ultralytics.table import MODULES

    def build(names: list[str]) -> RepoBuild:
        return build_with_repo(repo, path, sizes, names, nc=nc, python=python)

    return traced(path, requested, repo, build, MODULES, "Ultralytics", dialect, RULE_NAMES)


def _locate(repo: str | Path) -> Located:
    from yolodiag.findings import Unsupported

    if str(repo) in INSTALLED:
        return Located(None, MODULE, MODULE, "ultralytics")
    folder = Path(repo).expanduser()
    # The package folder itself (site-packages/ultralytics) stands for the folder above it.
    if folder.name == "ultralytics" and is_checkout(folder.parent):
        folder = folder.parent
    if folder.is_dir() and is_checkout(folder):
        folder = folder.resolve()
        return Located(str(folder), MODULE, str(folder / TASKS), "ultralytics")
    raise Unsupported(f"--repo {repo}: expected an Ultralytics checkout (a folder holding "
                      f"{TASKS.as_posix()}), its ultralytics package folder, or `pip` for the "
                      "installed package")
