"""`--data data.yaml`: the dataset as YOLOv5 v7.0's train.py reads it, and batches from it.

Splits resolve as YOLOv5 v7.0's check_dataset resolves them (datapaths.py: a relative `path`
is relative to the YOLOv5 root, not to the data YAML), an entry being a folder (searched
recursively for images) or a file listing image paths (`./x` relative to the list's folder;
an image given as an entry is read as such a list, and lists nothing). A label file is
where YOLOv5 looks for it: the image path with its last `/images/` replaced by `/labels/`
and its suffix by `.txt`. Labels are judged by YOLOv5's rules: an image whose label file has
rows of other than 5 values (9+ values: a polygon, turned into its bounding box), negative
values, or coordinates above 1 is dropped as corrupt; duplicate rows are removed; class ids
are not checked there (train.py asserts `max class < nc` on the train split only). A `names`
list of another length than `nc` makes YOLOv5 v7.0 use `len(names)` classes.

Image sizes (for the best possible recall and letterboxing) and pixels (for real batches) are
read with Pillow, an optional extra, imported only here and only then.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolodiag.datapaths import SPLITS, Entry, Located, locate, split_entries
from yolodiag.findings import Unsupported

IMAGE_SUFFIXES = frozenset({".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff",
                            ".webp", ".pfm"})


@dataclass(frozen=True)
class LabelProblem:
    """One label file YOLOv5 would reject (or, for a class id, crash on)."""

    kind: str  # "columns" | "negative" | "pixels" | "class"
    label: Path
    line: int  # 1-based row of the first offending value
    text: str  # that row as written


@dataclass
class Split:
    """One split of the dataset and what YOLOv5 would make of its labels."""

    name: str
    written: tuple[str, ...]  # the entries as data.yaml gives them
    absent: tuple[str, ...] = ()  # entries that do not exist
    images: tuple[Path, ...] = ()
    missing: tuple[Path, ...] = ()  # images without a label file (YOLOv5: background)
    empty: tuple[Path, ...] = ()  # label files without rows
    problems: tuple[LabelProblem, ...] = ()
    labels: dict[Path, np.ndarray] = field(default_factory=dict)  # kept images: (n, 5) rows
    _sizes: dict[Path, tuple[int, int]] = field(default_factory=dict, repr=False)

    def size(self, image: Path) -> tuple[int, int]:
        """An image's (width, height), read once (the anchor fit and YD404 both need it)."""
        if image not in self._sizes:
            self._sizes[image] = image_size(image)
        return self._sizes[image]

    @property
    def dropped(self) -> int:
        """Images YOLOv5 ignores as corrupt (label rows it cannot use)."""
        return len({p.label for p in self.problems if p.kind != "class"})

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "entries": list(self.written), "absent": list(self.absent),
                "images": len(self.images), "labels_missing": len(self.missing),
                "labels_empty": len(self.empty), "dropped": self.dropped,
                "objects": int(sum(len(rows) for rows in self.labels.values()))}


@dataclass
class DataInfo:
    """A data.yaml read as YOLOv5 v7.0 reads it."""

    path: Path
    root: Path  # what relative entries are resolved against
    nc: int | None  # as written
    names: tuple[str, ...]
    splits: dict[str, Split]
    lines: dict[str, int]  # top-level key -> line in data.yaml
    located: Located  # v7.0's resolution of the paths, and the one read

    @property
    def classes(self) -> int:
        """The class count YOLOv5 trains with: len(names) when names are given."""
        return len(self.names) if self.names else (self.nc or 0)

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "root": str(self.root), "nc": self.nc,
                "names": list(self.names), "classes": self.classes,
                "splits": {name: split.as_dict() for name, split in self.splits.items()},
                "resolution": self.located.as_dict()}


def read_data(path: str | Path, nc: int | None = None, *,
              root: str | Path | None = None, honour_path: bool = True,
              resolve_path=None) -> DataInfo:
    """Read data.yaml and every split's labels. `nc`: the class count to judge class ids by
    (default: the data's). `root`: the YOLOv5 checkout a relative `path:` is resolved against,
    as v7.0 resolves it (default: the working directory, where train.py is normally run).
    `honour_path` False: the splits are relative to `root` whatever `path:` says (a train.py
    that reads no `path:`). `resolve_path`: a family's own reading of `path:` (the dialect's
    `data_path_rule`). Raises Unsupported for a file that is not a YOLOv5 data YAML."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        lines = {key.value: key.start_mark.line + 1 for key, _ in yaml.compose(text).value} \
            if isinstance(data, dict) else {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise Unsupported(f"{path}: cannot read the data YAML: {_first_line(e)}") from e
    if not isinstance(data, dict) or "train" not in data or not (data.get("names")
                                                               or data.get("nc")):
        raise Unsupported(f"{path}: not a YOLOv5 data YAML (needs `train`, `val` and `names` "
                          "or `nc`)")
    names = data.get("names") or ()
    names = tuple(str(v) for _, v in sorted(names.items())) if isinstance(names, dict) else \
        tuple(str(v) for v in names)
    written_nc = data.get("nc") if isinstance(data.get("nc"), int) else None
    located = locate(path, data if honour_path else
                     {key: value for key, value in data.items() if key != "path"}, root,
                     resolve_path)
    info = DataInfo(path, located.base, written_nc, names, {}, lines, located)
    classes = nc or info.classes
    for name in SPLITS:
        if split_entries(data, name):
            info.splits[name] = _read_split(name, located.entries[name], classes)
    return info


def yolov5_root(repo: str | Path | None) -> Path | None:
    """The YOLOv5 root of a `--repo` value: its folder when it holds models/yolo.py (a checkout
    or the pip package's folder); None otherwise (`pip`, nothing: the working directory)."""
    if repo is None or not (Path(repo).expanduser() / "models" / "yolo.py").is_file():
        return None
    return Path(repo).expanduser()


def label_path(image: Path) -> Path:
    """Where YOLOv5 looks for an image's labels: last /images/ -> /labels/, suffix -> .txt."""
    text = str(image)
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if images in text:
        head, _, tail = text.rpartition(images)
        text = head + labels + tail
    return Path(text.rsplit(".", 1)[0] + ".txt")


def _read_split(name: str, entries: tuple[Entry, ...], nc: int) -> Split:
    images: list[Path] = []
    absent = []
    for entry in entries:
        if entry.target.is_dir():
            images += [p for p in entry.target.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        elif entry.target.is_file():
            images += _listed_images(entry.target)
        else:
            absent.append(entry.written)
    split = Split(name, tuple(e.written for e in entries), tuple(absent),
                  tuple(sorted(set(images))))
    missing, empty, problems = [], [], []
    for image in split.images:
        label = label_path(image)
        if not label.is_file():
            missing.append(image)
            split.labels[image] = np.zeros((0, 5), np.float32)
            continue
        rows, problem = _read_labels(label, nc)
        if problem is not None:
            problems.append(problem)
            if problem.kind != "class":
                continue
        if len(rows) == 0:
            empty.append(label)
        split.labels[image] = rows
    split.missing, split.empty, split.problems = tuple(missing), tuple(empty), tuple(problems)
    return split


def _listed_images(listing: Path) -> list[Path]:
    found = []
    for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("./"):
            line = str(listing.parent / line[2:])
        if Path(line).suffix.lower() in IMAGE_SUFFIXES:
            found.append(Path(line))
    return found


def _read_labels(label: Path, nc: int) -> tuple[np.ndarray, LabelProblem | None]:
    """YOLOv5's reading of one label file: rows (n, 5), and the first problem it has."""
    written = [line for line in label.read_text(encoding="utf-8", errors="replace").splitlines()
               if line.strip()]
    rows = []
    for number, line in enumerate(written, 1):
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            return np.zeros((0, 5), np.float32), LabelProblem("columns", label, number, line)
        if len(values) > 6:  # a polygon: YOLOv5 keeps its bounding box
            xs, ys = values[1::2], values[2::2]
            values = [values[0], (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2,
                      max(xs) - min(xs), max(ys) - min(ys)]
        rows.append((number, line, values))
    for kind, bad in (("columns", lambda v: len(v) != 5), ("negative", lambda v: min(v) < 0),
                      ("pixels", lambda v: max(v[1:]) > 1)):
        for number, line, values in rows:
            if bad(values):
                return np.zeros((0, 5), np.float32), LabelProblem(kind, label, number, line)
    array = np.array([v for _, _, v in rows], np.float32).reshape(-1, 5)
    _, first = np.unique(array, axis=0, return_index=True)
    if len(first) < len(array):  # as YOLOv5: rows reordered only when duplicates are dropped
        array = array[first]
    for number, line, values in rows:
        if values[0] >= nc or values[0] != int(values[0]):
            return array, LabelProblem("class", label, number, line)
    return array, None


def image_size(image: Path) -> tuple[int, int]:
    """(width, height) as YOLOv5 sees it (EXIF rotation applied), from the header only."""
    from PIL import Image

    with Image.open(image) as im:
        # getexif() decodes a whole PNG to look for a trailing eXIf chunk (50x the header's
        # cost); formats that carry EXIF in their header, or a PNG whose header has it, are asked.
        if (im.format in ("JPEG", "MPO", "TIFF", "WEBP") or "exif" in im.info) and \
                im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF: rotated by 90 degrees
            return im.height, im.width
        return im.width, im.height


def box_sizes(split: Split, img: int) -> np.ndarray:
    """Every label's (w, h) in pixels with its image resized so its long side is `img`, as
    YOLOv5's AutoAnchor measures them (without its random 0.9-1.1 scale)."""
    sizes = []
    for image, rows in split.labels.items():
        if len(rows):
            w, h = split.size(image)
            scale = img / max(w, h)
            sizes.append(rows[:, 3:5] * np.array([w * scale, h * scale], np.float32))
    return np.concatenate(sizes, 0) if sizes else np.zeros((0, 2), np.float32)


def best_possible_recall(sizes: np.ndarray, anchors: np.ndarray,
                         anchor_t: float) -> tuple[float, float]:
    """YOLOv5's check_anchors metric: for each label and anchor, the worse of the two side
    ratios (min(r, 1/r) per side, then the smaller); a label is recallable when its best anchor
    is above 1/anchor_t. Returns (best possible recall, mean anchors above threshold)."""
    if len(sizes) == 0:  # YOLOv5's mean over no labels: undefined, never a recall of 1
        return float("nan"), float("nan")
    ratio = sizes[:, None] / anchors[None]
    worst_side = np.minimum(ratio, 1 / ratio).min(2)
    best = worst_side.max(1)
    return float((best > 1 / anchor_t).mean()), float((worst_side > 1 / anchor_t).sum(1).mean())


def letterboxed_targets(split: Split, images: list[Path], img: tuple[int, int]):
    """Targets (n, 6) (image index, class, x, y, w, h normalised) for `images` letterboxed into
    `img` (height, width) as YOLOv5 letterboxes without augmentation."""
    import torch

    rows = []
    for index, image in enumerate(images):
        labels = split.labels[image]
        if not len(labels):
            continue
        w0, h0 = split.size(image)
        ratio, pad_x, pad_y = _letterbox((w0, h0), img)
        h, w = img
        box = labels[:, 1:5] * np.array([w0, h0, w0, h0], np.float32) * ratio
        box[:, 0] += pad_x
        box[:, 1] += pad_y
        box /= np.array([w, h, w, h], np.float32)
        rows.append(np.concatenate([np.full((len(labels), 1), index, np.float32),
                                    labels[:, :1], box], 1))
    return torch.from_numpy(np.concatenate(rows, 0) if rows else np.zeros((0, 6), np.float32))


def _letterbox(size: tuple[int, int], img: tuple[int, int]) -> tuple[float, float, float]:
    """(ratio, left padding, top padding) fitting a (w, h) image into (height, width)."""
    w0, h0 = size
    h, w = img
    ratio = min(h / h0, w / w0)
    return ratio, (w - round(w0 * ratio)) / 2, (h - round(h0 * ratio)) / 2


def batch_images(split: Split, batch: int) -> list[Path]:
    """The images of a `--data` batch: the split's first `batch` in YOLOv5's (sorted) order."""
    return list(split.labels)[:batch]


def content_windows(split: Split, img: tuple[int, int], batch: int):
    """(b, 4) x1, y1, x2, y2 in pixels: where each image of `data_batch` lies inside its
    letterbox. val.py clips predictions to the original image (scale_boxes), which is clipping
    them to this window here, since IoU does not change under the letterbox's scale and shift."""
    import torch

    rows = []
    for image in batch_images(split, batch):
        w0, h0 = split.size(image)
        ratio, pad_x, pad_y = _letterbox((w0, h0), img)
        rows.append((pad_x, pad_y, pad_x + w0 * ratio, pad_y + h0 * ratio))
    return torch.tensor(rows, dtype=torch.float32)


def data_batch(split: Split, img: tuple[int, int], batch: int, device: str = "cpu"):
    """(images (b, 3, h, w) in [0, 1], targets (n, 6)): the split's first `batch` images in
    YOLOv5's (sorted) order, letterboxed into `img` on grey 114, no augmentation."""
    import torch
    from PIL import Image

    chosen = batch_images(split, batch)
    if not chosen:
        raise Unsupported(f"the {split.name} split has no usable image for a batch")
    h, w = img
    tensors = []
    for image in chosen:
        with Image.open(image) as im:
            im = im.convert("RGB")
            ratio, pad_x, pad_y = _letterbox(im.size, img)
            size = (round(im.width * ratio), round(im.height * ratio))
            resample = Image.BILINEAR if ratio > 1 else Image.BOX  # as cv2's LINEAR / AREA
            canvas = Image.new("RGB", (w, h), (114, 114, 114))
            canvas.paste(im.resize(size, resample), (round(pad_x - 0.1), round(pad_y - 0.1)))
        tensors.append(torch.from_numpy(np.asarray(canvas, np.float32) / 255).permute(2, 0, 1))
    targets = letterboxed_targets(split, chosen, img)
    return torch.stack(tensors).to(device), targets.to(device)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
