"""`--repo DIR` on a YOLOv5 checkout: where its yolo module is (a checkout, the installed `yolov5`
package folder, or that package by name) and the model built by it, read with YOLOv5's module
table. The worker protocol and the reading of its result are family-neutral
(`dialects/common/repo.py`, which explains them).
"""

from __future__ import annotations

from pathlib import Path

from yolodiag.dialects.common.repo import (
    REQUIRED,
    Located,
    RepoBuild,
    RepoFailure,
    RepoLayer,
    as_built,
    run_worker,
    traced,
)

__all__ = ["REQUIRED", "RepoBuild", "RepoFailure", "RepoLayer", "as_built", "build_with_repo"]


def build_with_repo(repo: str | Path, yaml_path: str | Path, sizes: list[tuple[int, int]],
                    names: list[str], nc: int | None = None, python: str | None = None,
                    timeout: float = 600) -> RepoBuild:
    """Build `yaml_path` with the YOLOv5 code at `repo` in a subprocess running `python`.

    `repo`: a checkout (a folder with models/yolo.py), an installed `yolov5` package folder, or
    "yolov5" / "pip" for the package installed in `python`. Their code failing to import, build
    or run comes back in `failure`; raises Unsupported when `repo` is none of those, or when the
    subprocess ends without a result (a crash, a timeout).
    """
    return run_worker(_locate(repo), yaml_path, sizes, names, nc, python, timeout)


def repo_traced(path: Path, requested: tuple, sizes: list[tuple[int, int]], repo: str | Path,
                python: str | None, nc: int | None = None, dialect: str = "auto"):
    """(Facts, refusal or None) as commands._traced gives them, with the model built and traced
    by the user's YOLOv5 code at `sizes` (see common/repo.py's `traced`)."""
    from yolodiag.dialects.yolov5.table import MODULES

    def build(names: list[str]) -> RepoBuild:
        return build_with_repo(repo, path, sizes, names, nc=nc, python=python)

    return traced(path, requested, repo, build, MODULES, "YOLOv5", dialect)


def _locate(repo: str | Path) -> Located:
    from yolodiag.findings import Unsupported

    folder = Path(repo).expanduser()
    # A checkout named `yolov5` (git clone's default) is the folder, not the package.
    if folder.is_dir() and (folder / "models" / "yolo.py").is_file():
        folder = folder.resolve()
        source = str(folder / "models" / "yolo.py")
        if not (folder / "__init__.py").is_file():
            return Located(str(folder), "models.yolo", source, "yolov5")
        if folder.name.isidentifier():
            return Located(str(folder.parent), f"{folder.name}.models.yolo", source,
                           "yolov5")
    elif str(repo) in ("yolov5", "pip"):
        return Located(None, "yolov5.models.yolo", "yolov5.models.yolo", "yolov5")
    raise Unsupported(f"--repo {repo}: expected a YOLOv5 checkout (a folder with models/yolo.py),"
                      " the installed yolov5 package folder, or `yolov5` for that package")
