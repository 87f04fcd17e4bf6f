"""What a `.pt` file is before anything in it is read: its bytes (empty, text, a pickle, a zip
archive cut short, a damaged member), decided without executing anything: the first bytes and
the zip directory (Python's zipfile) only. Every dialect's checkpoint reader refuses with YD508
through `unreadable` and `damaged`; which framework wrote a readable file is each dialect's own
question. torch-free at import.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from yolodiag.findings import Location, Refused

ZIP_MAGIC = b"PK\x03\x04"  # every torch.save since torch 1.6 writes a zip archive
PICKLE_PROTOCOL = b"\x80"  # the first opcode of a pickle of protocol 2 or newer
SNIFFED_BYTES = 512


def refusal(code: str, message: str, hint: str, path: str | Path,
            data: dict | None = None) -> Refused:
    """The checkpoint reader's refusal (exit code 2) with one of its codes."""
    return Refused(code, message, hint, Location(str(path)), data)


def unreadable(path: Path) -> Refused | None:
    """YD508 when the file cannot be a torch zip checkpoint, saying what was found instead."""
    size = path.stat().st_size
    if size == 0:
        return _unreadable(path, "0 bytes: an empty file (a save or download that was "
                           "interrupted before anything was written)", {"found": "empty"})
    with path.open("rb") as file:
        head = file.read(SNIFFED_BYTES)
    if not head.startswith(ZIP_MAGIC):
        return _unreadable(path, *_not_a_zip(head, size))
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
            corrupt = archive.testzip()  # every member against its CRC-32 (torch does not)
    except (zipfile.BadZipFile, OSError, EOFError):
        return _unreadable(path, f"a truncated zip archive: {size:,} bytes that begin as "
                           "torch.save's zip but end before its central directory, which "
                           "torch.save writes last: an interrupted save or download",
                           {"found": "truncated zip", "bytes": size})
    if corrupt is not None:
        return _unreadable(path, f"a damaged zip archive: its member {corrupt} fails its CRC-32 "
                           "check (bytes changed after the save: a bad copy or disk)",
                           {"found": "damaged archive", "member": corrupt, "bytes": size})
    if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in members):
        return _unreadable(path, f"a zip archive without a pickled checkpoint in it (no "
                           f"data.pkl among its {len(members)} members)",
                           {"found": "zip without data.pkl", "bytes": size})
    return None


def damaged(path: Path, error: Exception) -> Refused:
    """YD508 for a complete-looking archive whose records torch cannot read."""
    return _unreadable(path, f"a damaged torch archive: its directory is complete but torch "
                       f"cannot read its records ({type(error).__name__}: {error})",
                       {"found": "damaged archive"})


def _not_a_zip(head: bytes, size: int) -> tuple[str, dict]:
    text = _as_text(head)
    if text is not None:
        first = text.strip().splitlines()[0][:60] if text.strip() else ""
        what = ("a Git LFS pointer, not the file it stands for (fetch it with `git lfs pull`)"
                if first.startswith("version https://git-lfs") else
                "an HTML page (a download that returned a web page instead of the file)"
                if first.lower().startswith(("<!doctype html", "<html")) else "text")
        return (f"not a zip archive but {what}, {size:,} bytes beginning {first!r}",
                {"found": "text", "bytes": size})
    if head.startswith(PICKLE_PROTOCOL):
        return (f"not a zip archive but a bare pickle, {size:,} bytes (torch.save's format "
                "before torch 1.6, or pickle.dump): yolodiag reads only the zip format, whose "
                "globals can be listed without unpickling anything",
                {"found": "pickle", "bytes": size})
    return (f"not a zip archive: {size:,} bytes beginning {head[:8].hex(' ')}, neither "
            "torch.save's zip nor a pickle", {"found": "not a zip archive", "bytes": size})


def _as_text(head: bytes) -> str | None:
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # a multi-byte character cut by the sniffed length
        if e.start < len(head) - 3:
            return None
        text = head[:e.start].decode("utf-8")
    printable = sum(c.isprintable() or c in "\r\n\t" for c in text)
    return text if text and printable >= 0.95 * len(text) else None


def _unreadable(path: Path, found: str, data: dict) -> Refused:
    return refusal("YD508", f"{path} is not a readable checkpoint: {found}",
                   "take the file again from where it came (the run's weights/ folder, the "
                   "release page) and compare its size with the original's", path, data)


def ultralytics_global(name: str) -> bool:
    """A global of the ultralytics package (its classes, its namespaces for settings)."""
    return name.split(".")[0] == "ultralytics"
