"""YD8xx and YD405: the dataset of --data, read as YOLOv5 v7.0's train.py reads it (data.py),
and the model's anchors against its labels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from yolodiag.checks.engine import Facts
from yolodiag.findings import Location, Problem, Severity, Stage, check

E, W = Severity.ERROR, Severity.WARNING
EXAMPLES = 3  # files named per problem
BPR_BOUND = 0.98  # YOLOv5's AutoAnchor refits anchors below this best possible recall


def _where(facts: Facts, key: str) -> Location:
    return Location(str(facts.data.path), facts.data.lines.get(key), section=key)


def _short(path: Path, facts: Facts) -> str:
    try:
        return str(path.relative_to(facts.data.root))
    except ValueError:
        return str(path)


@check("YD801", "labels-missing", E, Stage.DATA)
def labels_missing(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        Images of a split without a label file where YOLOv5 looks for it: the image path with
        its last `/images/` replaced by `/labels/` and its suffix by `.txt` (images/train/a.jpg
        -> labels/train/a.txt); also split entries of data.yaml that do not exist.
    Why it zeroes P and R:
        train.py trains an image without labels as pure background; with none found it stops.
        val.py only warns "No labels found" and reports P = R = mAP = 0.
    Example:
        yolodiag check --data dataset/data.yaml
        # the images have no labels/ folder beside images/: YOLOv5 finds no labels
    Fix:
        Put the labels in a `labels` folder beside `images`, with the same sub-folders and file
        names (`.txt`), or point `train`/`val` at the folder that has them.
    """
    from yolodiag.data import label_path

    for name, split in facts.data.splits.items():
        if split.absent:
            yield Problem(
                f"{name}: {', '.join(split.absent)} does not exist (under {facts.data.root}): "
                "YOLOv5 stops with 'Dataset not found'",
                "fix the path, or `path:` that it is relative to", _where(facts, name),
                {"split": name, "absent": list(split.absent)})
        if not split.missing:
            continue
        examples = ", ".join(f"{_short(image, facts)} -> {_short(label_path(image), facts)}"
                             for image in split.missing[:EXAMPLES])
        total = len(split.images)
        effect = ("train.py trains them as background" if name == "train" else
                  "val.py counts their objects as absent")
        if len(split.missing) == total:
            effect = ("train.py stops: no labels found" if name == "train" else
                      "val.py warns and reports P = R = mAP = 0")
        yield Problem(
            f"{name}: {len(split.missing)} of {total} images have no label file where YOLOv5 "
            f"looks ({examples}): {effect}",
            "put each image's labels at images/ -> labels/, same name with .txt",
            _where(facts, name),
            {"split": name, "images": total, "missing": len(split.missing),
             "examples": [str(p) for p in split.missing[:EXAMPLES]]})


_KINDS = {
    "pixels": ("with coordinates above 1 (pixels, not fractions of the image)",
               "YOLOv5 drops these images as corrupt",
               "divide x and w by the image width, y and h by its height"),
    "negative": ("with negative values", "YOLOv5 drops these images as corrupt",
                 "clip boxes to the image; class ids start at 0"),
    "columns": ("with rows of other than 5 values (class x y w h)",
                "YOLOv5 drops these images as corrupt", "write `class x y w h` per object"),
}


@check("YD802", "label-format", E, Stage.DATA)
def label_format(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        Label files YOLOv5 cannot use, counted per split and kind: coordinates above 1 (pixels
        instead of fractions of the image), negative values, rows of other than 5 values, and
        class ids that are not below the class count (`nc`, or the --nc/model's).
    Why it zeroes P and R:
        An image with such a file is dropped as corrupt: its objects are never seen. Class
        ids >= nc stop train.py (it checks the train split only); in the val split they are
        objects no prediction can match.
    Example:
        yolodiag check --data dataset/data.yaml
        # labels/train/0.txt gives pixels: `0 32 32 25.6 19.2`
    Fix:
        Write one `class x y w h` row per object, x, y, w, h as fractions of the image width
        and height, class ids from 0 to nc - 1.
    """
    classes = facts.built.nc if facts.built is not None else facts.data.classes
    for name, split in facts.data.splits.items():
        for kind in ("pixels", "negative", "columns", "class"):
            found = [p for p in split.problems if p.kind == kind]
            if not found:
                continue
            examples = "; ".join(f"{_short(p.label, facts)}:{p.line} `{p.text.strip()}`"
                                 for p in found[:EXAMPLES])
            if kind == "class":
                what = f"with class ids >= {classes}"
                effect = ("train.py stops (its labels must stay below nc)" if name == "train"
                          else "no prediction can match these objects")
                fix = f"use class ids 0..{classes - 1}, or give the data its real nc and names"
            else:
                what, effect, fix = _KINDS[kind]
            yield Problem(
                f"{name}: {len(found)} of {len(split.images)} label files {what} ({examples}): "
                f"{effect}", fix, _where(facts, name),
                {"split": name, "kind": kind, "files": len(found), "images": len(split.images),
                 "examples": [f"{p.label}:{p.line}" for p in found[:EXAMPLES]]})


@check("YD803", "empty-labels", W, Stage.DATA)
def empty_labels(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A split where most label files (more than half) exist but hold no object.
    Why it zeroes P and R:
        Empty files are background images: a few help, most of a split means the boxes were
        lost in an export (or written elsewhere), and the model learns to predict nothing.
    Example:
        yolodiag check --data dataset/data.yaml
        # two of the three label files are empty
    Fix:
        Re-export the labels; check that the converter wrote the rows (class x y w h).
    """
    for name, split in facts.data.splits.items():
        present = len(split.images) - len(split.missing) - split.dropped
        if present and len(split.empty) * 2 > present:
            yield Problem(
                f"{name}: {len(split.empty)} of {present} label files are empty (e.g. "
                f"{', '.join(_short(p, facts) for p in split.empty[:EXAMPLES])})",
                "re-export the labels: one `class x y w h` row per object",
                _where(facts, name), {"split": name, "empty": len(split.empty),
                                      "label_files": present})


@check("YD405", "low-best-possible-recall", W, Stage.DATA)
def low_best_possible_recall(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        The anchors' best possible recall (BPR) on the train labels below 0.98, as YOLOv5's
        AutoAnchor computes it before training. Each label's (w, h) is taken in pixels with
        its image resized so that its long side is the training size (the first --img).
        For each label and anchor (in pixels: grid units times stride), r = (w, h) / anchor
        and m = min(r, 1/r), the worse side: min over w and h. A label is recallable when its
        best anchor has m > 1/anchor_t (anchor_t = 4). BPR = recallable labels / labels;
        anchors above threshold (AAT) = mean count of anchors with m > 1/anchor_t per label.
        YOLOv5 also scales each image by a random 0.9-1.1; yolodiag uses 1, so its BPR is
        the one of the unscaled labels.
    Why it zeroes P and R:
        Labels no anchor can match get no positive (zero recall for them). AutoAnchor then
        replaces the YAML's anchors by k-means ones (unless --noautoanchor), so the model
        trained is not the one written, and a checkpoint's anchors no longer fit it.
    Example:
        yolodiag check --data dataset/data.yaml
        # 1-2 px objects at 640: no anchor of the base model is within 4x of them
    Fix:
        Write anchors that fit the data's objects at the training size, or `anchors: 3` and
        let AutoAnchor fit them; keep the training size the one the anchors were made for.
    """
    fit = facts.anchor_fit
    if fit is None or fit.bpr >= BPR_BOUND:
        return
    yield Problem(
        f"best possible recall {fit.bpr:.4f} (anchors above threshold {fit.aat:.2f}) of the "
        f"{fit.labels} train labels at {fit.img} with anchor_t {facts.anchor_t:g}: below "
        f"{BPR_BOUND}, so AutoAnchor replaces the YAML's anchors before training",
        "write anchors that fit the objects at the training size, or `anchors: 3`",
        facts.key_location("anchors"), fit.as_dict())


@dataclass(frozen=True)
class AnchorFit:
    """YOLOv5's AutoAnchor metric of the model's anchors on the train labels."""

    bpr: float
    aat: float
    labels: int
    img: int

    def as_dict(self) -> dict:
        return {"bpr": round(self.bpr, 6), "aat": round(self.aat, 6), "labels": self.labels,
                "img": self.img}


def anchor_fit(facts: Facts) -> AnchorFit | None:
    """BPR and AAT at the first traced size (None without train labels or written anchors)."""
    import numpy as np

    from yolodiag.data import best_possible_recall, box_sizes

    built = facts.built
    split = facts.data.splits.get("train") if facts.data is not None else None
    if built is None or built.anchors is None or built.stride is None or split is None or \
            not isinstance(facts.spec.anchors, tuple):
        return None
    img = max(facts.first_ok.img) if facts.first_ok else 640
    sizes = box_sizes(split, img)
    strides = np.array(built.stride, np.float32).reshape(-1, 1, 1)
    anchors = (built.anchors.cpu().numpy() * strides).reshape(-1, 2)
    bpr, aat = best_possible_recall(sizes, anchors, facts.anchor_t)
    return AnchorFit(bpr, aat, len(sizes), img)
