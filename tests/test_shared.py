"""tests/shared, the repository's copy of the project's ../shared, cannot drift from it.

Everywhere: tests/shared holds exactly what make.py writes, and each copy still has the sha256
its MANIFEST.json recorded when make.py made it (a copy edited by hand fails). Where the
originals are (../shared, or $YOLODIAG_SHARED), also: each original still has the sha256 the
copy was made from, each file copied unchanged is still the original byte for byte, and each
shrunk checkpoint's pickle is still what make.py makes from the original's."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import zipfile
from pathlib import Path

from conftest import ROOT

HERE = ROOT / "tests" / "shared"
ORIGINALS = Path(os.environ.get("YOLODIAG_SHARED") or ROOT.parent / "shared")


def _make():
    spec = importlib.util.spec_from_file_location("tests_shared_make", HERE / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make = _make()


def originals() -> Path | None:
    """The folder tests/shared was made from, where it is (a contributor's clone has none)."""
    if not (ORIGINALS / "golden").is_dir() or ORIGINALS.resolve() == HERE.resolve():
        return None
    return ORIGINALS


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tests_shared_holds_what_make_writes_and_nothing_else():
    held = sorted(p.relative_to(HERE).as_posix() for p in HERE.rglob("*") if p.is_file()
                  and "__pycache__" not in p.parts)
    expected = sorted({*make.copied(HERE), *make.stripped(HERE), *make.SHRUNK, *make.OWN})
    assert held == expected
    for folder in make.COPIED_FOLDERS + make.STRIPPED:
        assert any((HERE / folder).iterdir()), folder


def test_copies_are_still_what_make_made_from_the_originals():
    recorded = json.loads((HERE / make.MANIFEST).read_text(encoding="utf-8"))
    assert sorted(recorded) == sorted({*make.copied(HERE), *make.stripped(HERE), *make.SHRUNK})
    edited = [name for name, sha in recorded.items() if _sha256(HERE / name) != sha["copy"]]
    assert edited == [], "edited by hand: run tests/shared/make.py again"
    source = originals()
    if source is None:  # a clone alone: the copies are checked against the manifest only
        return
    moved = [name for name, sha in recorded.items() if _sha256(source / name) != sha["source"]]
    assert moved == [], f"changed in {source}: run tests/shared/make.py again"
    assert make.copied(HERE) == make.copied(source)  # the same files in the listed folders
    differ = [name for name in make.copied(source)
              if (HERE / name).read_bytes() != (source / name).read_bytes()]
    assert make.stripped(HERE) == make.stripped(source)
    differ += [name for name in make.stripped(source)
               if (HERE / name).read_text(encoding="utf-8") != make.without_comments(
                   (source / name).read_text(encoding="utf-8"))]
    differ += [name for name in make.SHRUNK
               if make.shrink_pickle(_pickled(source / name))[0] != _pickled(HERE / name)]
    assert differ == [], f"changed in {source}: run tests/shared/make.py again"


def _pickled(path: Path) -> bytes:
    """A checkpoint's data.pkl (torch names the archive's folder after the file)."""
    with zipfile.ZipFile(path) as archive:
        return archive.read(f"{path.stem}/data.pkl")
