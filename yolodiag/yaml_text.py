"""A model YAML's bytes as YOLOv5 v7.0 reads them: as ASCII, every other byte dropped.

YOLOv5's yolo.py opens the model YAML with `encoding='ascii', errors='ignore'`, so a YAML pasted
from a web page (no-break spaces in the indentation, full-width characters in a comment) builds
there, as if those characters were not in the file. Reading the file as UTF-8 would refuse it or
read other values; this module drops what YOLOv5 drops and says where, for the info finding.
Newlines are ASCII, so line numbers stay those of the file. Dropping changes nothing worth a
finding when only comments held such characters (every stock YOLOv5 YAML has a rocket in its
first comment); it does when the YAML data differs from the file read as UTF-8, as it does for
a no-break space in the indentation. It must not import torch.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class DroppedText:
    """What the ASCII reading left out: the first line (1-based) and character that matter
    (outside a comment, where there is one), totals, and whether the YAML data differs from
    the file read as UTF-8 (`changes_data`: it is not the YAML the user sees)."""

    first_line: int
    first_character: str  # U+FFFD where the file is not UTF-8
    characters: int
    lines: int
    changes_data: bool

    @property
    def first_name(self) -> str:
        """`U+00A0 NO-BREAK SPACE`, or what an undecodable byte is."""
        if self.first_character == "\ufffd":
            return "a byte that is not UTF-8"
        return (f"U+{ord(self.first_character):04X} "
                f"{unicodedata.name(self.first_character, 'unnamed')}")


def ascii_text(raw: bytes) -> tuple[str, DroppedText | None]:
    """The text YOLOv5 parses from these bytes, and what it dropped (None: nothing)."""
    text = raw.decode("ascii", errors="ignore")
    if len(text) == len(raw):
        return text, None
    written = raw.decode("utf-8", errors="replace")
    lines = written.split("\n")  # YAML's lines, not str.splitlines
    dropping = [(i, line) for i, line in enumerate(lines, 1) if not line.isascii()]
    first_line, line = next(((i, line) for i, line in dropping if _before_comment(line)),
                            dropping[0])
    first = next(c for c in line if not c.isascii())
    characters = sum(1 for _, line in dropping for c in line if not c.isascii())
    return text, DroppedText(first_line, first, characters, len(dropping),
                             _data(text) != _data(written))


def _before_comment(line: str) -> bool:
    """A character outside ASCII stands before the line's `#` comment (or there is none)."""
    hash_at = next((i for i, c in enumerate(line)
                    if c == "#" and (i == 0 or line[i - 1] in " \t")), len(line))
    return not line[:hash_at].isascii()


def _data(text: str) -> object:
    """The YAML's data, or the parser's complaint (two unreadable texts count as equal only
    when the parser stops at the same place for the same reason)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        return ("unreadable", str(e))
