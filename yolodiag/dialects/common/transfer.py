"""The name-and-shape weight transfer that YOLOv5's and YOLOv7's train.py both do with
`--weights`: build a model (the `--cfg` YAML, or the checkpoint's embedded one), keep each of
the checkpoint's float tensors whose key and shape the model has, except keys containing an
excluded word, and log `Transferred X/Y items` with Y the model's state-dict size. Which model,
which words are excluded and what else the training code loads from the checkpoint (its
optimizer, its EMA) are each dialect's rule (`<dialect>/checkpoint.py`); a family whose load
does more (Ultralytics' `BaseModel.load`) gives its own per-key `KeyTransfer`s and log line.
`Transfer.row_shift` finds the rows an edit shifted against the checkpoint's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from yolodiag.dialects.common.checkpoint import CheckpointInfo
from yolodiag.dialects.common.checkpoint_format import refusal

COUNTED = frozenset({"transferred", "remapped", "filled"})


@dataclass(frozen=True)
class KeyTransfer:
    key: str
    layer: int | None
    # "transferred", "shape" (differs), "missing" (not in the checkpoint), "excluded"; a
    # family's own rule may add "remapped" (rows copied by class name), "filled" (a first conv
    # filled across channel counts), both counted, and "copied" (a branch replaced by the
    # checkpoint's, its values learnt but not counted in the log)
    status: str
    model_shape: tuple[int, ...]
    checkpoint_shape: tuple[int, ...] | None = None

    @property
    def counted(self) -> bool:
        """Counted in the training code's `Transferred X/Y` line."""
        return self.status in COUNTED

    @property
    def learnt(self) -> bool:
        """Holds the checkpoint's values after the load, counted or not."""
        return self.status in COUNTED or self.status == "copied"

    @property
    def counter(self) -> bool:
        """BatchNorm's num_batches_tracked: a 0-d step counter, so any BatchNorm's matches by
        shape. train.py counts it in `Transferred X/Y`; it carries nothing learnt."""
        return self.key.endswith(".num_batches_tracked")


@dataclass(frozen=True)
class StateLoad:
    """A part of the training state train.py loads from the checkpoint after the weights (the
    optimizer's, the EMA's), and whether it fits the new model."""

    part: str  # "optimizer", "ema"
    saved: str  # what the checkpoint holds, in words with numbers
    needed: str  # what the new model needs, likewise
    error: str | None  # what train.py raises there; None when it loads

    def as_dict(self) -> dict[str, Any]:
        return {"part": self.part, "saved": self.saved, "needed": self.needed,
                "error": self.error}


@dataclass
class Transfer:
    """What train.py does with `--weights`: the model it builds and what it loads."""

    cfg_given: bool
    resume: bool
    nc: int
    spec: Any  # the ModelSpec of the model train.py builds
    keys: list[KeyTransfer]
    unused: list[str]  # checkpoint keys the model has no place for
    # The training state loaded after the weights, in train.py's order (None: not modelled,
    # as YOLOv5 v7.0 loads none when it fine-tunes).
    state_loads: list[StateLoad] | None = None
    log_format: str = "Transferred {x}/{y} items"  # the training code's log line
    trainer: str = "train.py"  # who builds the model and loads the weights, in words
    with_cfg: str = "with --cfg"  # how the user has it build the YAML they edited
    without_cfg: str = "without --cfg"  # how the user makes it build the checkpoint's YAML
    cfg_hint: str = "pass your YAML with --cfg next to --weights"  # ... and how not to

    @property
    def transferred(self) -> int:
        return sum(k.counted for k in self.keys)

    @property
    def total(self) -> int:
        return len(self.keys)

    @property
    def state_error(self) -> StateLoad | None:
        """The first load of training state that fails: train.py stops there."""
        return next((s for s in self.state_loads or () if s.error), None)

    def random_layers(self) -> list[int]:
        """Layers that got no learnt tensor (a BatchNorm step counter is none), the head left
        out (its output convolutions change with the class count in any fine-tuning)."""
        head = len(self.spec.layers) - 1
        return [i for i, keys in sorted(self.layers().items())
                if i != head and not any(k.learnt and not k.counter
                                         for k in keys)]

    def row_shift(self, checkpoint_shapes: dict[str, tuple[int, ...]], max_offset: int = 4,
                  min_tensors: int = 20) -> RowShift | None:
        """Rows inserted or removed before a stretch of layers: state keys carry the row
        index (`model.<i>.`), so every later layer's tensors miss their counterparts by the
        shift. The offset whose layers match the checkpoint's best (tensors of the same
        sub-key and shape, BatchNorm counters aside; a layer counts where most of it matches
        shifted and less in place), where the head is among them and the shift beats the
        in-place match at least twice over."""
        ours = _by_layer({k.key: k.model_shape for k in self.keys})
        theirs = _by_layer(checkpoint_shapes)
        if not ours:
            return None

        def matched(layer: int, offset: int) -> int:
            other = theirs.get(layer - offset, {})
            return sum(other.get(rest) == shape for rest, shape in ours[layer].items())

        best = None
        for offset in (d for d in range(-max_offset, max_offset + 1) if d):
            better = [i for i in sorted(ours) if matched(i, offset) > matched(i, 0)
                      and 2 * matched(i, offset) >= len(ours[i])]  # most of it, shifted
            shifted = sum(matched(i, offset) for i in better)
            in_place = sum(matched(i, 0) for i in better)
            # a row inserted or removed shifts every later key: the head's included
            if max(ours) in better and shifted >= min_tensors and shifted >= 2 * in_place \
                    and (best is None or shifted > best.tensors):
                best = RowShift(offset, better, shifted)
        return best

    def layers(self) -> dict[int, list[KeyTransfer]]:
        by_layer: dict[int, list[KeyTransfer]] = {}
        for key in self.keys:
            if key.layer is not None:
                by_layer.setdefault(key.layer, []).append(key)
        return by_layer

    def as_dict(self) -> dict[str, Any]:
        layers = []
        for index, keys in sorted(self.layers().items()):
            done = sum(k.counted for k in keys)
            layers.append({"layer": index, "transferred": done, "total": len(keys),
                           "skipped": [{"key": k.key, "why": k.status,
                                        "model_shape": list(k.model_shape),
                                        "checkpoint_shape": (list(k.checkpoint_shape)
                                                             if k.checkpoint_shape else None)}
                                       for k in keys if not k.counted]})
        out = {"cfg_given": self.cfg_given, "resume": self.resume, "nc": self.nc,
               "transferred": self.transferred, "total": self.total,
               "log": self.log_format.format(x=self.transferred, y=self.total),
               "trainer": self.trainer, "with_cfg": self.with_cfg,
               "layers": layers, "unused": self.unused}
        if self.state_loads is not None:
            out["state_loads"] = [s.as_dict() for s in self.state_loads]
        return out


def intersect(checkpoint: CheckpointInfo, spec, nc: int | None, *, cfg_given: bool,
              resume: bool, exclude: tuple[str, ...], modules: dict | None = None):
    """The model `spec` builds with `nc` classes (meta device), and the Transfer of the
    checkpoint's state into it by key and shape, keys containing a word of `exclude` left
    out. Returns (Transfer, the model's state dict)."""
    from yolodiag.build.builder import build

    nc = nc or spec.nc
    built = build(spec, nc=nc, device="meta", modules=modules)
    model_state = built.model.state_dict()
    keys = []
    for key, value in model_state.items():
        theirs = checkpoint.state.get(key)
        shape = tuple(value.shape)
        if any(x in key for x in exclude):
            status = "excluded"
        elif theirs is None:
            status = "missing"
        elif tuple(theirs.shape) != shape:
            status = "shape"
        else:
            status = "transferred"
        keys.append(KeyTransfer(key, layer_of(key), status, shape,
                                tuple(theirs.shape) if theirs is not None else None))
    unused = [k for k in checkpoint.state if k not in model_state]
    return Transfer(cfg_given, resume, nc, spec, keys, unused), built


def embedded_spec(checkpoint: CheckpointInfo, title: str, modules: dict | None = None,
                  dialect: str = "auto"):
    """The ModelSpec of the checkpoint's own embedded YAML (as text, read like a file)."""
    import yaml

    from yolodiag.spec import parse_spec

    if checkpoint.yaml is None:
        raise refusal("YD509", f"{checkpoint.path} is a plain state dict, not a {title} "
                      "checkpoint: it has no embedded model YAML to build without --cfg",
                      "give the model YAML with --cfg", checkpoint.path,
                      {"framework": None, "model_class": None})
    text = yaml.safe_dump(checkpoint.yaml, sort_keys=False)
    return parse_spec(text, f"{checkpoint.path}:yaml", extra_modules=frozenset(modules or ()),
                      dialect=dialect)


def layer_of(key: str) -> int | None:
    """The layer index of a state-dict key (`model.<i>.`...), None for another key."""
    match = re.match(r"model\.(\d+)\.", key)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class RowShift:
    """The model's layers that line up with the checkpoint's at another index."""

    offset: int  # the model's layer i matches the checkpoint's layer i - offset
    layers: list[int]  # the model's layers that match better shifted than in place
    tensors: int  # learnt tensors of the same name and shape there, shifted


def _by_layer(shapes: dict[str, tuple[int, ...]]) -> dict[int, dict[str, tuple[int, ...]]]:
    layers: dict[int, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        match = re.match(r"model\.(\d+)\.(.+)", key)
        if match and not key.endswith(".num_batches_tracked"):
            layers.setdefault(int(match[1]), {})[match[2]] = tuple(shape)
    return layers
