"""Traced shapes as plain data: what they are and how a message or a table writes them
(with the sizes and numbers around them).

A shape is a list of ints (one tensor) or nested lists (a layer with several outputs). No
torch here: checks and renderers read shapes without importing it.
"""

from __future__ import annotations

from typing import Any

Shape = Any  # a list of ints, or nested lists for layers with several outputs


def is_map(shape: Shape) -> bool:
    """A single feature-map shape: four ints (batch, channels, height, width)."""
    return isinstance(shape, list) and len(shape) == 4 and all(isinstance(d, int) for d in shape)


def format_shape(shape: Shape) -> str:
    """Output shape without the batch dimension: [1, 32, 320, 320] -> 32x320x320; for a layer
    with several outputs (the head), how many."""
    if shape is None:
        return "-"
    if all(isinstance(d, int) for d in shape):
        return "x".join(map(str, shape[1:]))
    return f"{len(shape)} outputs"


def format_sizes(sizes) -> str:
    """((640, 640), (384, 640)) -> '640x640, 384x640' (height x width)."""
    return ", ".join(f"{h}x{w}" for h, w in sizes)


def plain_number(x: float) -> int | float:
    """8.0 -> 8, 42.666 -> 42.67: a stride or size as a message writes it."""
    return int(x) if float(x).is_integer() else round(x, 2)


def consecutive_runs(indices: list[int]) -> list[list[int]]:
    """[0, 1, 2, 5] -> [[0, 1, 2], [5]]: layer indices as the runs a message names."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def format_runs(indices: list[int]) -> str:
    """[4, 5, 15, 16, 17] -> '4-5, 15-17'."""
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}"
                     for r in consecutive_runs(indices))
