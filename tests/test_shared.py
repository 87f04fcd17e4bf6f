"""tests/shared, the repository's copy of the project's ../shared, cannot drift from it: each file
copied unchanged is still the original byte for byte, and each shrunk checkpoint's pickle is
still what tests/shared/make.py makes from the original's. That needs ../shared (or
$YOLODIAG_SHARED) and skips without it, as in a contributor's clone; what tests/shared holds
against make.py's lists is checked everywhere."""

from __future__ import annotations

import importlib.util
import os
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

HERE = ROOT / "tests" / "shared"
ORIGINALS = Path(os.environ.get("YOLODIAG_SHARED") or ROOT.parent / "shared")


def _make():
    spec = importlib.util.spec_from_file_location("tests_shared_make", HERE / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make = _make()


def originals() -> Path:
    if not (ORIGINALS / "golden").is_dir() or ORIGINALS.resolve() == HERE.resolve():
        pytest.skip(f"needs the project's shared folder with the originals ({ORIGINALS}); "
                    "tests/shared is then the only copy there is")
    return ORIGINALS


def test_tests_shared_holds_what_make_writes_and_nothing_else():
    held = sorted(p.relative_to(HERE).as_posix() for p in HERE.rglob("*") if p.is_file()
                  and "__pycache__" not in p.parts)
    expected = sorted({*make.copied(HERE), *make.stripped(HERE), *make.SHRUNK, *make.OWN})
    assert held == expected
    for folder in make.COPIED_FOLDERS + make.STRIPPED:
        assert any((HERE / folder).iterdir()), folder


def test_copies_and_shrunk_pickles_are_still_made_from_the_originals():
    source = originals()
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
