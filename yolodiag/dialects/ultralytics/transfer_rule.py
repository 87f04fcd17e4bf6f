"""`BaseModel.load` of Ultralytics 8.4.190, on key -> shape tables: which of a checkpoint's
tensors land in a freshly built model, and what its log line counts. Computed from shapes alone
(the model is built on the meta device); nothing of the checkpoint runs.

What it does, in its order, and what `Transferred X/Y` counts:
1. The class branch: when both heads are Detect-family, neither model is fused and the heads'
   box-branch input widths agree, a `cv3` (and `one2one_cv3`) whose hidden width differs (it
   is max(c3, min(nc, 100)), so it follows the class count) is replaced by a copy of the
   source's branch, the last convolution of each level made anew for the target's class count.
   The model's state dict changes shape there; the copied tensors are not counted unless step 3
   finds them again under the same key (the head at the same index).
2. Class rows by name: with real class names on both sides (the trainer sets the data's before
   loading) and some of them shared, each class-logit convolution's rows are copied by name,
   counted once per tensor whose input width agrees (a bias always), and left out of step 3.
3. The name-and-shape intersection, with no exclusions.
4. A first convolution `model.0.conv.weight` left out by step 3 whose kernel agrees is filled
   across the channel counts the two have in common, counted once.
Y is the number of tensors in the model's state dict after step 1.
"""

from __future__ import annotations

import re
from typing import Any

from yolodiag.dialects.common.transfer import KeyTransfer, layer_of

# The Detect classes of Ultralytics' table (Segment, Pose, OBB ... are its subclasses too).
DETECT_HEADS = frozenset({"Detect", "v10Detect"})
CLASS_BRANCHES = ("cv3", "one2one_cv3")
FIRST_CONV = "model.0.conv.weight"


def load(checkpoint, spec, target: dict[str, tuple[int, ...]],
         names: dict[int, str] | None) -> tuple[list[KeyTransfer], list[str]]:
    """KeyTransfer per tensor of the model after step 1 (its order), and the checkpoint's keys
    the model has no place for. `target`: the freshly built model's key -> shape."""
    source = {k: tuple(v.shape) for k, v in checkpoint.state.items()}
    head, source_head = len(spec.layers) - 1, _source_head(checkpoint, source)
    copied: set[str] = set()
    if spec.layers[head].module in DETECT_HEADS and source_head is not None:
        target, copied = _replace_class_branches(target, source, head, source_head)
    remapped = _remapped_class_rows(target, source, head, names, checkpoint.names)
    statuses = {}
    for key, shape in target.items():
        theirs = source.get(key)
        if key in remapped:
            statuses[key] = "remapped"
        elif theirs == shape:
            statuses[key] = "transferred"
        elif key in copied:
            statuses[key] = "copied"
        else:
            statuses[key] = "missing" if theirs is None else "shape"
    first = target.get(FIRST_CONV), source.get(FIRST_CONV)
    if (statuses.get(FIRST_CONV) not in (None, "transferred") and None not in first
            and first[0][2:] == first[1][2:]):
        statuses[FIRST_CONV] = "filled"
    keys = [KeyTransfer(key, layer_of(key), statuses[key], shape, source.get(key))
            for key, shape in target.items()]
    return keys, [k for k in source if k not in target]


def _source_head(checkpoint, source: dict[str, tuple[int, ...]]) -> int | None:
    """The checkpoint's head index when its head is Detect-family and unfused, else None."""
    yaml = checkpoint.yaml or {}
    rows = [row for part in ("backbone", "head") for row in (yaml.get(part) or [])
            if isinstance(row, list) and len(row) >= 3]
    if not rows or rows[-1][2] not in DETECT_HEADS:
        return None
    if not any(".bn." in key for key in source):  # fused: every Conv's BatchNorm folded away
        return None
    return len(rows) - 1


def _replace_class_branches(target: dict, source: dict, head: int, source_head: int):
    """Step 1 on the shape tables: (the model's key -> shape afterwards, the keys copied)."""
    ours, theirs = f"model.{head}.", f"model.{source_head}."
    if _box_inputs(target, ours) != _box_inputs(source, theirs):
        return target, set()
    copied: set[str] = set()
    for branch in CLASS_BRANCHES:
        dst, src = _levels(target, ours + branch), _levels(source, theirs + branch)
        if not dst or not src:
            continue
        dst_in = target[f"{ours}{branch}.0.{dst[0]}.weight"][1]
        src_in = source[f"{theirs}{branch}.0.{src[0]}.weight"][1]
        if dst_in == src_in:
            continue
        replaced = {}
        for key, shape in source.items():
            if key.startswith(f"{theirs}{branch}."):
                level, last = _level_and_last(key, theirs + branch, src)
                new = ours + key[len(theirs):]
                if last and level < len(dst):  # the last conv, made for the target's classes
                    out = target[f"{ours}{branch}.{level}.{dst[level]}.weight"][0]
                    shape = (out, *shape[1:]) if key.endswith(".weight") else (out,)
                    if out == source[key][0]:
                        copied.add(new)
                else:
                    copied.add(new)
                replaced[new] = shape
        target = _splice(target, f"{ours}{branch}.", replaced)
    return target, copied


def _remapped_class_rows(target: dict, source: dict, head: int, names, source_names) -> set[str]:
    """Step 2: the class-logit tensors copied row by row by class name (left out of step 3)."""
    if not (isinstance(names, dict) and isinstance(source_names, dict)):
        return set()
    if any(all(str(k) == str(v) for k, v in n.items()) for n in (names, source_names)):
        return set()  # placeholder names {0: '0', ...} match nothing
    lookup = {str(v).strip().lower(): k for k, v in source_names.items()}
    index = [lookup.get(str(names.get(k)).strip().lower(), -1) for k in range(len(names))]
    matched = sum(i >= 0 for i in index)
    if not matched or (len(source_names) == len(names) and index == list(range(len(names)))):
        return set()
    ours = f"model.{head}."
    remapped = set()
    for branch in CLASS_BRANCHES:
        levels = _levels(target, ours + branch)
        for level, last in enumerate(levels):
            stem = f"{ours}{branch}.{level}.{last}."
            if target.get(stem + "weight", (None,))[0] != len(names):
                continue
            for key in (stem + "weight", stem + "bias"):
                if key in source and key in target and source[key][1:] == target[key][1:]:
                    remapped.add(key)
    return remapped


def _box_inputs(shapes: dict, prefix: str) -> list[int]:
    return [shapes[f"{prefix}cv2.{level}.0.conv.weight"][1]
            for level in range(len(_levels(shapes, prefix + "cv2")))
            if f"{prefix}cv2.{level}.0.conv.weight" in shapes]


def _levels(shapes: dict, prefix: str) -> list[int]:
    """Per level of a branch (`prefix`.<level>.<index>...), the index of its last module."""
    last: dict[int, int] = {}
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.(\d+)\.")
    for key in shapes:
        match = pattern.match(key)
        if match:
            level, index = int(match[1]), int(match[2])
            last[level] = max(last.get(level, index), index)
    return [last[level] for level in sorted(last)]


def _level_and_last(key: str, prefix: str, levels: list[int]) -> tuple[int, bool]:
    level, index = map(int, key[len(prefix) + 1:].split(".")[:2])
    return level, level < len(levels) and index == levels[level]


def _splice(shapes: dict, prefix: str, replaced: dict) -> dict[str, Any]:
    """`shapes` with the keys under `prefix` replaced by `replaced`, in their place."""
    out: dict[str, Any] = {}
    for key, shape in shapes.items():
        if key.startswith(prefix):
            if replaced:
                out.update(replaced)
                replaced = {}
        else:
            out[key] = shape
    return out


