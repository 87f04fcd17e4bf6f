"""YD8xx and YD405: the dataset of --data, read as YOLOv5 v7.0's train.py reads it (data.py),
and the model's anchors against its labels."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from yolodiag.checks.engine import Facts
from yolodiag.datapaths import STOPS_TRAINING
from yolodiag.findings import Location, Problem, Severity, Stage, check

E, W = Severity.ERROR, Severity.WARNING
EXAMPLES = 3  # files named per problem
BPR_BOUND = 0.98  # YOLOv5's AutoAnchor refits anchors below this best possible recall


def _where(facts: Facts, key: str) -> Location:
    return Location(str(facts.data.path), facts.data.lines.get(key), section=key)


def stop_text(split: str, facts: Facts) -> str:
    """What v7.0 does when an entry of this split does not exist (measured on crafted files)."""
    if split == "val":
        download = " (its `download:` is run instead)" if "download" in facts.data.lines else ""
        return f"check_dataset stops with 'Dataset not found' before training{download}"
    if split == "train":
        return "train.py's loader stops before training ('Error loading data ... does not exist')"
    return "train.py never reads it; val.py --task test stops on it"


NOTHING_LEFT = {"train": "; no label file is left: train.py stops ('No labels found')",
                "val": "; no label file is left: val.py reports P = R = mAP = 0"}


def _kept(split) -> int:
    """Label files YOLOv5 reads (found and not dropped as corrupt)."""
    return len(split.images) - len(split.missing) - split.dropped


def _objects(split) -> int:
    return sum(len(rows) for rows in split.labels.values())


def _split_severity(split: str) -> Severity:
    """A fault of train or val keeps P and R at zero; one of test only its own evaluation."""
    return E if split in STOPS_TRAINING else W


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
    Why it is an error:
        Measured with v7.0's train.py on the shapes data: without labels/train it stops
        before epoch 1 ("No labels found in .../labels/train.cache, can not start training");
        a val entry that does not exist stops check_dataset ("Dataset not found"), a train
        entry the loader ("Error loading data from ...: ... does not exist"). Without val
        labels every epoch reports P = R = mAP = 0. Partly missing labels (objects trained as
        background) and a missing `test` entry (train.py never reads it) are warnings.
    Example:
        yolodiag check --data dataset/data.yaml
        # the images have no labels/ folder beside images/: YOLOv5 finds no labels
    Fix:
        Put the labels in a `labels` folder beside `images`, with the same sub-folders and file
        names (`.txt`), or point `train`/`val` at the folder that has them.
    """
    from yolodiag.data import label_path

    windows_unresolved = facts.data.located.windows and not facts.data.located.as_meant
    for name, split in facts.data.splits.items():
        if split.absent and not windows_unresolved:  # YD804 names those paths
            yield Problem(
                f"{name}: {', '.join(split.absent)} does not exist (under {facts.data.root}): "
                f"{stop_text(name, facts)}",
                "fix the path, or `path:` that it is relative to", _where(facts, name),
                {"split": name, "absent": list(split.absent)}, _split_severity(name))
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
            f"{name}: {len(split.missing)} of {total} images have no label file where "
            f"{facts.title} looks ({examples}): {effect}",
            "put each image's labels at images/ -> labels/, same name with .txt",
            _where(facts, name),
            {"split": name, "images": total, "missing": len(split.missing),
             "examples": [str(p) for p in split.missing[:EXAMPLES]]},
            _split_severity(name) if len(split.missing) == total else W)


_KINDS = {  # what, fix; the effect of each: the family's training drops the images as corrupt
    "pixels": ("with coordinates above 1 (pixels, not fractions of the image)",
               "divide x and w by the image width, y and h by its height"),
    "negative": ("with negative values", "clip boxes to the image; class ids start at 0"),
    "columns": ("with rows of other than 5 values (class x y w h)",
                "write `class x y w h` per object"),
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
    Why it is an error:
        train.py asserts its largest train class id is below nc ("Label class 5 exceeds
        nc=3") before epoch 1; when every image of a split is dropped as corrupt, train.py
        finds no labels and stops (train), or val.py has none and reports P = R = mAP = 0
        (val). Fewer dropped images, and class ids >= nc in val, cost those objects only:
        a warning.
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
                stops = name == "train"
            else:
                (what, fix), effect = _KINDS[kind], f"{facts.title} drops these images as corrupt"
                stops = not _kept(split)
                if stops:
                    effect += NOTHING_LEFT[name] if name in NOTHING_LEFT else ""
            yield Problem(
                f"{name}: {len(found)} of {len(split.images)} label files {what} ({examples}): "
                f"{effect}", fix, _where(facts, name),
                {"split": name, "kind": kind, "files": len(found), "images": len(split.images),
                 "examples": [f"{p.label}:{p.line}" for p in found[:EXAMPLES]]},
                _split_severity(name) if stops else W)


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
        present = _kept(split)
        if present and len(split.empty) * 2 > present and _objects(split):  # none: YD805
            yield Problem(
                f"{name}: {len(split.empty)} of {present} label files are empty (e.g. "
                f"{', '.join(_short(p, facts) for p in split.empty[:EXAMPLES])})",
                "re-export the labels: one `class x y w h` row per object",
                _where(facts, name), {"split": name, "empty": len(split.empty),
                                      "label_files": present})


@check("YD804", "data-path-unresolved", E, Stage.DATA)
def data_path_unresolved(facts: Facts) -> Iterator[Problem]:
    r"""
    What it detects:
        Splits YOLOv5 v7.0 does not find where it looks for them. Its check_dataset resolves a
        relative `path:` against the YOLOv5 root (the folder of train.py, or of the pip
        package), not against the data YAML's folder nor the working directory: the common
        `path: .  # relative to this file` is the YOLOv5 root. yolodiag takes the working
        directory as that root (where train.py is normally run) unless told: `check --repo
        DIR` passes DIR, `run` the run's checkout. Found when the data YAML's own folder holds
        the splits v7.0 misses (yolodiag then reads them there, says so in the report, and
        the other data checks go on with that reading), and for Windows paths (`C:\data`,
        `images\train`): on Linux a backslash is part of a name and `C:` a relative folder.
        An Ultralytics YAML is read by Ultralytics' own rule (check_det_dataset, 8.4.190): a
        relative `path:` as it stands where it exists from the working directory, else under
        its `datasets_dir` setting (settings.json); no `path:` is the YAML's own folder.
    Why it zeroes P and R:
        Nothing trains: train.py stops before the first epoch.
    Why it is an error:
        Measured with v7.0's check_dataset on the shapes data YAML (`path: .`): "Dataset not
        found" (missing paths ['<ROOT>/images/val']) before the model is built; with the val
        split found and the train split not, train.py's loader stops ("Error loading data
        from ...: ... does not exist"). A missing `test` split only is a warning: train.py
        never reads it.
    Example:
        yolodiag check --data dataset/data.yaml
        # `path: .` in dataset/data.yaml: v7.0 looks in the YOLOv5 root, not in dataset/
    Fix:
        Write an absolute `path:` (`path: /data/shapes`), or one relative to the YOLOv5 root
        (`path: ../datasets/shapes`, as YOLOv5's own data YAMLs do), with forward slashes.
    """
    located = facts.data.located
    missed = {name: located.not_found(name) for name in located.yolov5_entries}
    missed = {name: entries for name, entries in missed.items() if entries}
    if not missed or not (located.as_meant or located.windows):
        return
    looked = " and ".join(f"{name} in {', '.join(str(e.target) for e in entries)}"
                          for name, entries in missed.items())
    first = next(iter(missed))
    stop = stop_text("val" if "val" in missed else first, facts)
    root = (f"the {facts.title} root {located.yolov5_root}" if located.root_given else
            f"the {facts.title} root (taken to be the working directory, {located.yolov5_root})")
    written = (f"`path: {located.written}`" if located.written else
               "the split entries (no `path:`)")
    message = (f"{facts.dialect.full_title} resolves {written} "
               f"{located.rule or 'against ' + root}, so it looks for {looked}, and finds "
               f"nothing: {stop}")
    if located.windows:
        message += (f"; {', '.join(f'`{w}`' for w in located.windows)} "
                    f"{'is a Windows path' if len(located.windows) == 1 else 'are Windows paths'}"
                    ": on Linux a backslash is part of a name and `C:` a relative folder")
    if located.as_meant:
        message += (f"; the splits are relative to the data YAML's folder ({located.base}): "
                    "the data checks read them there")
        hint = (f"write `path: {located.base}` (absolute), or a path relative to the "
                f"{facts.title} root: `path: {os.path.relpath(located.base, located.yolov5_root)}`"
                if not located.rule else f"write `path: {located.base}` (absolute)")
    else:
        hint = (f"write an absolute `path:` with forward slashes, or one relative to the "
                f"{facts.title} root")
    severe = any(name in missed for name in STOPS_TRAINING)
    yield Problem(message, hint, _where(facts, "path" if located.written else first),
                  {"yolov5_root": str(located.yolov5_root), "path": located.written,
                   "not_found": {n: [str(e.target) for e in es] for n, es in missed.items()},
                   "read_as": str(located.base) if located.as_meant else None,
                   "windows": list(located.windows)}, E if severe else W)


@check("YD805", "no-labels", E, Stage.DATA)
def no_labels(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A split without a single label row: its entries hold no image, or its label files are
        all empty. (Images without label files are YD801; files dropped as corrupt, YD802.)
        Without train labels there is no best possible recall to compute (YOLOv5's formula
        averages over no labels): yolodiag reports none, and YD404 assigns the synthetic
        batch instead.
    Why it zeroes P and R:
        With no train labels nothing is learned; with no val labels nothing can be scored.
    Why it is an error:
        Measured with v7.0's train.py on the shapes data with every train label file emptied:
        it stops before AutoAnchor and epoch 1 ("All labels empty in .../labels/train.cache,
        can not start training"); a split folder without images stops its loader ("No
        images found"). With every val label file emptied it trains, and every validation
        reports P = R = mAP = 0 ("no labels found in val set, can not compute metrics without
        labels"). An empty `test` split (train.py never reads it) is a warning.
    Example:
        yolodiag check --data dataset/data.yaml
        # every label file is empty: no object to learn
    Fix:
        Write the labels (one `class x y w h` row per object), or point the split at the
        folder that has them.
    """
    for name, split in facts.data.splits.items():
        if split.absent:  # YD801/YD804 say what is not there
            continue
        if not split.images:
            effect = {"train": "train.py's loader stops ('No images found')",
                      "val": "train.py's val loader stops ('No images found')"}.get(
                name, "val.py --task test stops ('No images found')")
            message = f"{name}: {', '.join(split.written)} holds no image: {effect}"
        elif _objects(split) == 0 and _kept(split):
            effect = {"train": "train.py stops before training ('All labels empty ... can not "
                               "start training'); there is no best possible recall",
                      "val": "val.py finds no labels: P = R = mAP = 0 every epoch"}.get(
                name, "val.py --task test reports P = R = mAP = 0")
            message = (f"{name}: no label row in {len(split.images)} images ({_kept(split)} "
                       f"label files, all empty): {effect}")
        else:
            continue
        yield Problem(message, "write one `class x y w h` row per object in labels/",
                      _where(facts, name),
                      {"split": name, "images": len(split.images), "label_files": _kept(split)},
                      _split_severity(name))


@check("YD405", "low-best-possible-recall", W, Stage.DATA, needs={"anchors"})
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
