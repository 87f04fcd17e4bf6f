"""`--repo DIR` on a YOLOv7 checkout (WongKinYiu/yolov7 or a fork of it): recognising one, and the
model its own `models/yolo.py` builds, read with YOLOv7's module table. The worker protocol and
the reading of its result are family-neutral (`dialects/common/repo.py`, which explains them).

A YOLOv7 checkout is told from a YOLOv5 one by its layout, read with `ast` and never run: its
models/yolo.py defines (or imports) YOLOv7's own head, IDetect. YOLOv7 is no package: a checkout
folder is the only form.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

from yolodiag.dialects.common.repo import Located, RepoBuild, run_worker, traced

__all__ = ["build_with_repo", "is_checkout", "repo_traced"]

HEAD = "IDetect"  # the name only a YOLOv7 models/yolo.py has


def is_checkout(folder: str | Path) -> bool:
    """Whether `folder` holds a YOLOv7 models/yolo.py: one that defines or imports IDetect."""
    yolo = Path(folder) / "models" / "yolo.py"
    try:
        return _names_head(str(yolo.resolve()), yolo.stat().st_mtime_ns)
    except OSError:
        return False


@lru_cache(maxsize=8)
def _names_head(source: str, modified: int) -> bool:
    try:
        tree = ast.parse(Path(source).read_text(encoding="utf-8"), source)
    except (OSError, UnicodeDecodeError, SyntaxError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == HEAD:
            return True
        if isinstance(node, ast.ImportFrom) and any(
                (alias.asname or alias.name) == HEAD for alias in node.names):
            return True
    return False


def build_with_repo(repo: str | Path, yaml_path: str | Path, sizes: list[tuple[int, int]],
                    names: list[str], nc: int | None = None, python: str | None = None,
                    timeout: float = 600) -> RepoBuild:
    """Build `yaml_path` with the YOLOv7 checkout at `repo` (its `models.yolo.Model`) in a
    subprocess running `python`. Their code failing to import, build or run comes back in
    `failure`; raises Unsupported when `repo` is no YOLOv7 checkout, or when the subprocess
    ends without a result (a crash, a timeout)."""
    return run_worker(_locate(repo), yaml_path, sizes, names, nc, python, timeout)


def repo_traced(path: Path, requested: tuple, sizes: list[tuple[int, int]], repo: str | Path,
                python: str | None, nc: int | None = None, dialect: str = "auto"):
    """(Facts, refusal or None) as commands._traced gives them, with the model built and traced
    by the user's YOLOv7 code at `sizes` (see common/repo.py's `traced`)."""
    from yolodiag.dialects.yolov7.table import MODULES

    def build(names: list[str]) -> RepoBuild:
        return build_with_repo(repo, path, sizes, names, nc=nc, python=python)

    return traced(path, requested, repo, build, MODULES, "YOLOv7", dialect)


def _locate(repo: str | Path) -> Located:
    from yolodiag.findings import Unsupported

    folder = Path(repo).expanduser()
    if folder.is_dir() and is_checkout(folder):
        folder = folder.resolve()
        # Its yolo.py imports `models.common` and `utils.*`: the checkout folder goes first.
        return Located(str(folder), "models.yolo", str(folder / "models" / "yolo.py"),
                       "yolov7")
    raise Unsupported(f"--repo {repo}: expected a YOLOv7 checkout (a folder whose models/yolo.py "
                      f"defines {HEAD})")
