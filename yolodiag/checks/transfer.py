"""Checkpoint and run checks (YD501-YD507): what train.py's `--weights` really loads, and why a
finished run shows zero precision and recall. They read Facts.transfer (checkpoint.transfer)
and Facts.run (runs.read_run); YD504, YD508 and YD509 are the reader's own refusals
(checkpoint_format). A width mismatch (YD510, checks/width.py) replaces the per-layer
YD502/YD503 it causes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from yolodiag.checks.engine import Facts
from yolodiag.checks.width import width_mismatch
from yolodiag.findings import Location, Problem, Severity, Stage, check, describe
from yolodiag.shapes import format_runs

ZERO_MAP = 0.01  # a run whose best mAP@0.5 stays below this has learnt nothing usable

describe("YD504", "unsafe-checkpoint", Severity.ERROR, Stage.CKPT, refuses=True, doc="""
    What it detects:
        A checkpoint whose pickle names a global outside yolodiag's allow-list: the classes of
        YOLOv5's model modules (models.yolo, models.common and the pip package's yolov5.models;
        read as inert records, never imported), for a YOLOv7 checkpoint only the classes of
        YOLOv7's own table and blocks in its models.yolo, models.common and
        models.experimental, for an Ultralytics checkpoint the classes of
        ultralytics.nn.tasks and ultralytics.nn.modules.* (a user's block registered there
        included) and ultralytics.utils.IterableSimpleNamespace (Ultralytics itself loads
        them with weights_only=False), torch.nn module classes (inert records too),
        tensors through torch's weights-only loader, and numpy's array, scalar and dtype
        reconstructors. The globals are listed before anything is built; the file is refused
        with their names and nothing in it runs.
    Why it zeroes P and R:
        It does not: it protects the machine. `torch.load(weights_only=False)`, which train.py
        uses, would import and call `os.system` or `builtins.eval` if the pickle names them.
    Why it is an error:
        Loading the file runs the code it names: the measured consequence is a command run on
        your machine (the tests' crafted pickle creates a file when torch.load opens it), so
        nothing of it is read and the command exits 2.
    Example:
        yolodiag weights model.yaml --weights crafted.pt   # its pickle calls os.system
    Fix:
        Do not load the file. Take weights from a source you trust, or re-save a trusted
        state dict with torch.save(model.state_dict(), f).
    """)

describe("YD508", "checkpoint-unreadable", Severity.ERROR, Stage.CKPT, refuses=True, doc="""
    What it detects:
        A `--weights` file that is no readable torch checkpoint, said by what it is instead:
        0 bytes, text (a Git LFS pointer, an HTML page from a failed download), a bare
        pickle (torch.save before torch 1.6), other bytes that are not a zip archive, a zip
        archive cut short (torch.save writes its central directory last, so an interrupted
        save or download loses it), a zip without a pickled checkpoint, or a member whose
        bytes fail its CRC-32 (torch does not check it). Only bytes are read: nothing is
        unpickled.
    Why it zeroes P and R:
        There is no run to zero: train.py's torch.load fails on the file before the first
        epoch (measured as train.py calls torch.load, torch 2.14: a truncated zip "failed finding
        central directory", an empty file "Ran out of input", a Git LFS pointer "invalid
        load key, 'v'"). A member with changed bytes loads without a word, its tensor wrong.
    Why it is an error:
        Nothing trustworthy can be transferred: train.py stops with an exception on an
        empty, text or truncated file and loads a damaged member's changed bytes unnoticed,
        and yolodiag has no weights to compare, so the command exits 2.
    Example:
        yolodiag weights model.yaml --weights last.pt   # a copy cut off mid-save
    Fix:
        Take the file again from where it came (the run's weights/ folder, the release
        page, `git lfs pull` for a pointer) and compare its size with the original's.
    """)

describe("YD509", "foreign-checkpoint", Severity.ERROR, Stage.CKPT, refuses=True, doc="""
    What it detects:
        A checkpoint of another framework, named from the globals its pickle references
        (nothing is loaded): an Ultralytics YOLOv8/YOLO11 checkpoint pickles classes of the
        `ultralytics` package (ultralytics.nn.tasks.DetectionModel); a YOLOv7 one pickles
        `models.yolo.Model` with classes YOLOv5 v7.0 has none of (IDetect, IAuxDetect, MP, SP,
        SPPCSPC, RepConv, ImplicitA ...). YOLOv5 v7.0 itself pickles DetectionModel; a YOLOv5
        v6 checkpoint (`models.yolo.Model` with YOLOv5 blocks only) is read as YOLOv5. Read
        for a YOLOv7 cfg, a YOLOv5 v7.0 checkpoint (DetectionModel) is foreign too; without
        --cfg a YOLOv7 checkpoint is read as YOLOv7 whatever the YAML. Also a
        torch file holding neither train.py's checkpoint dict nor a state dict, and a plain
        state dict where the model would be built from its (absent) embedded YAML.
    Why it zeroes P and R:
        Another architecture's tensors are not YOLOv5's. Measured with YOLOv5 v7.0's
        train.py loading (torch.load, then the name-and-shape intersection): the YOLOv7-tiny
        checkpoint fails to unpickle ("Can't get attribute 'MP' on models.common"); the
        yolo11n one fails without the ultralytics package and, with it installed, transfers
        71/349 items into yolov5n.yaml (27 BatchNorm counters, 44 tensors of layers 0-5, 7,
        9 and 13 whose key names and shapes happen to agree), 59/349 into yolov5s.yaml.
        Read for an Ultralytics YAML, a YOLOv5 or YOLOv7 checkpoint is foreign likewise:
        Ultralytics' loader stops on their `models.*` classes.
    Why it is an error:
        The file cannot give what `--weights` is for: train.py either stops on it or loads
        another architecture's tensors wherever names coincide, and yolodiag's reader and
        transfer model YOLOv5 checkpoints only, so there is nothing true to report about
        this one and the command exits 2.
    Example:
        yolodiag weights yolov5s.yaml --weights yolo11n.pt
    Fix:
        Use a YOLOv5 v7.0 checkpoint (yolov5s.pt, a train.py weights/last.pt) with YOLOv5, or
        the file with the framework that wrote it.
    """)


@check("YD501", "cfg-ignored", Severity.ERROR, Stage.CKPT)
def cfg_ignored(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        `--weights X.pt` without `--cfg` (or with `--resume`): train.py v7.0 then builds the
        checkpoint's own embedded YAML, `Model(cfg or ckpt['model'].yaml)`, and the YAML you
        edited is never trained. The finding lists the rows where the two YAMLs differ. In
        Ultralytics the same happens with `yolo train model=w.pt` (`--no-cfg` here): its
        trainer rebuilds `w.pt`'s embedded YAML; the edited one is trained only as
        `model=x.yaml pretrained=w.pt`.
    Why it zeroes P and R:
        It does not zero them by itself: it trains a different model. Every conclusion drawn
        from the run about the edited architecture is wrong, and the edit's own bugs go unseen.
    Why it is an error:
        The run trains the checkpoint's own model: none of the edited YAML is trained, so
        the run says nothing about it, and the edit that was meant to be tested never ran.
    Example:
        yolodiag weights model.yaml --weights yolov5s.pt --no-cfg
    Fix:
        Pass the edited YAML with `--cfg models/your-model.yaml` together with `--weights`.
    """
    transfer = facts.transfer
    if transfer.cfg_given or facts.spec is None:
        return
    diff = _row_diff(facts.spec, transfer.spec)
    rows = "; ".join(f"layer {i}: yours {a}, built {b}" for i, a, b in diff[:6])
    more = f" and {len(diff) - 6} more rows" if len(diff) > 6 else ""
    yield Problem(
        f"{transfer.without_cfg}{' (or with --resume)' if transfer.resume else ''}, "
        f"{transfer.trainer} builds the checkpoint's embedded YAML, not {facts.path}: "
        + (f"{len(diff)} rows differ ({rows}{more})" if diff else "the two agree row by row"),
        transfer.cfg_hint.format(yaml=facts.path), facts.where(),
        {"differing_layers": [i for i, _, _ in diff]},
        None if diff else Severity.INFO)


def _row_diff(ours, theirs) -> list[tuple[int, str, str]]:
    def row(layer) -> str:
        return f"[{layer.from_}, {layer.number}, {layer.module}, {list(layer.args)}]"

    diff = []
    for i in range(max(len(ours.layers), len(theirs.layers))):
        a = row(ours.layers[i]) if i < len(ours.layers) else "-"
        b = row(theirs.layers[i]) if i < len(theirs.layers) else "-"
        if a != b:
            diff.append((i, a, b))
    return diff


@check("YD502", "partial-transfer", Severity.WARNING, Stage.CKPT)
def partial_transfer(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        train.py's name-and-shape transfer leaves whole layers at their random initialisation:
        `Transferred X/Y items` where the layers that got nothing are not just the Detect
        output convolutions (those change with the class count, as in any fine-tuning). Lists
        the random layers and how many tensors were skipped for a shape difference.
    Why it zeroes P and R:
        A random backbone under a pretrained head: the head's weights expect COCO features and
        get noise, so early epochs predict nothing useful; with few epochs, P and R stay at
        zero (the seed recipe: 149/241, backbone layers 1-9 random; its YOLO11 form from
        yolo11n.pt, as Ultralytics 8.4.190 logged it: 11/403).
    Example:
        yolodiag weights yolov5s-resnet18.yaml --weights yolov5s.pt --nc 3
    Fix:
        Train from scratch (`--weights ''`) with enough epochs, or use weights trained for the
        same backbone, or keep the stock backbone rows where you want pretrained weights.
    """
    transfer = facts.transfer
    random = transfer.random_layers()
    if not random or width_mismatch(facts):  # YD510 says why, once
        return
    shape = sum(k.status == "shape" for k in transfer.keys)
    yield Problem(
        f"{transfer.log_format.format(x=transfer.transferred, y=transfer.total)}: layers "
        f"{format_runs(random)} keep their "
        f"random initialisation ({shape} tensors skipped for a different shape, "
        f"{sum(k.status == 'missing' for k in transfer.keys)} missing from the checkpoint)",
        "train from scratch with enough epochs, or use weights of the same architecture",
        facts.where(random[0]), {"transferred": transfer.transferred, "total": transfer.total,
                                 "random_layers": random})


@check("YD503", "misplaced-transfer", Severity.WARNING, Stage.CKPT)
def misplaced_transfer(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        Tensors that transfer into a layer only in part (e.g. the BatchNorm statistics of the
        checkpoint's 6x6 stride-2 stem land on a random 1x1 convolution, because the BatchNorm
        shapes happen to match), or into a layer whose checkpoint counterpart is a different
        module (indices shifted after inserting rows), and a stretch of layers that would
        match the checkpoint's at another index (rows inserted or removed before them: the
        seed-like YOLO11 recipe against yolo11n.pt lines up one row later from layer 10 on,
        280 tensors at nc=80, while 11/403 transfer). BatchNorm's num_batches_tracked (a 0-d
        counter that matches any BatchNorm) is not a transferred tensor here, and the Detect
        output convolutions, which change with the class count, are not counted. A width
        mismatch (YD510) is reported once instead.
    Why it zeroes P and R:
        It does not by itself. The layer starts from statistics and weights computed for other
        inputs: in train mode BatchNorm normalises with the batch's own statistics, and the
        running statistics val.py uses are replaced at momentum 0.03 per step (1% left after
        150 steps, 83% after the 6 steps of a 3-epoch run of 2 batches), as a random layer's
        default ones (mean 0, variance 1) are. Measured: train.py's seed recipe from yolov5s.pt
        (layer 0's BatchNorm misplaced, 149/241) ended its 3 epochs at mAP@0.5 0.0018 and
        recall 0.26, the same recipe from scratch at 0.0029 and 0.26. What it costs: a
        misleading start for that layer, and early validations of a short run computed with
        statistics of another layer.
    Example:
        [-1, 1, Conv, [64, 1]],   # 0: BatchNorm transfers from yolov5s's 6x6 stem, the conv not
    Fix:
        Keep pretrained rows identical to the checkpoint's (module, arguments, position), or
        train those layers from scratch.
    """
    transfer = facts.transfer
    if width_mismatch(facts):
        return
    head = len(transfer.spec.layers) - 1
    theirs = facts.checkpoint_rows
    for index, all_keys in sorted(transfer.layers().items()):
        keys = [k for k in all_keys if not k.counter]
        if index == head:
            continue
        moved = [k for k in keys if k.status == "transferred"]
        stayed = [k for k in keys if k.status != "transferred"]
        if not moved:
            continue
        ours = transfer.spec.layers[index].module
        other = theirs.get(index)
        if stayed:
            skipped = ", ".join(f"{_leaf(k.key)} {_shape(k.model_shape)} vs checkpoint "
                                f"{_shape(k.checkpoint_shape)}" if k.checkpoint_shape else
                                f"{_leaf(k.key)} ({k.status})" for k in stayed[:3])
            yield Problem(
                f"layer {index} {ours}: {len(moved)} of {len(keys)} tensors transfer "
                f"({', '.join(_leaf(k.key) for k in moved[:5])}) but not {skipped}: pretrained "
                "statistics over a random layer",
                "make the row identical to the checkpoint's, or exclude the layer from transfer",
                facts.where(index), {"layer": index, "transferred": [k.key for k in moved]})
        elif other is not None and other != ours:
            yield Problem(
                f"layer {index} {ours} receives all {len(moved)} tensors of the checkpoint's "
                f"layer {index}, which is a {other}: the indices shifted",
                "keep pretrained rows at their checkpoint index",
                facts.where(index), {"layer": index, "checkpoint_module": other})
    shift = transfer.row_shift({k: tuple(v.shape) for k, v in facts.checkpoint.state.items()})
    if shift is not None:
        moved = "inserted" if shift.offset > 0 else "removed"
        yield Problem(
            f"layers {format_runs(shift.layers)} line up with the checkpoint's layers "
            f"{format_runs([i - shift.offset for i in shift.layers])} ({abs(shift.offset)} "
            f"row{'s' if abs(shift.offset) > 1 else ''} {moved} before them): {shift.tensors} "
            "tensors of the same shape there load nothing, because every state key carries its "
            "row index (model.<i>.)",
            "add new rows after the pretrained ones, or keep each pretrained row at its index",
            facts.where(shift.layers[0]),
            {"offset": shift.offset, "layers": shift.layers, "tensors": shift.tensors})


def _leaf(key: str) -> str:
    return key.split(".", 2)[2] if key.count(".") >= 2 else key


def _shape(shape) -> str:
    return "x".join(map(str, shape)) if shape else "-"


@check("YD505", "nonfinite-weights", Severity.ERROR, Stage.CKPT)
def nonfinite_weights(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        NaN or Inf in the checkpoint's tensors (a run that diverged and saved anyway).
    Why it zeroes P and R:
        Every transferred NaN spreads through the forward: all predictions are NaN, NMS keeps
        nothing, P = R = mAP = 0.
    Why it is an error:
        A NaN in any transferred tensor makes every prediction NaN from the first forward:
        NMS keeps nothing and P = R = mAP = 0 in every epoch.
    Example:
        yolodiag weights model.yaml --weights diverged.pt
    Fix:
        Take an earlier checkpoint (best.pt or one saved before the loss turned NaN).
    """
    bad = facts.checkpoint.nonfinite
    if bad:
        yield Problem(f"{len(bad)} checkpoint tensors hold NaN or Inf: {', '.join(bad[:5])}",
                      "use an earlier checkpoint", facts.where(), {"keys": bad})


@check("YD506", "run-zero-metrics", Severity.ERROR, Stage.RUN)
def run_zero_metrics(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A finished YOLOv5 run (runs/train/exp) whose results.csv shows mAP@0.5 below 0.01 in
        every epoch while its losses stay finite. The message ranks the causes by the
        evidence: first the iterations trained against train.py's warm-up (epochs x batches
        per epoch, a batch being ceil(train images / --batch-size), against its
        max(round(warmup_epochs x batches), 100) warm-up iterations, with the learning rate
        results.csv logged), and random layers against the epochs a from-scratch model needs;
        then the cfg's own check findings (at the run's --imgsz, with the run's class count:
        --nc, else its data YAML's names), the transfer from its --weights (YD501-YD503,
        --freeze), the data; last the experiment that settles the model, `yolodiag overfit`.
        The files opt.yaml names are looked for in the YOLOv5 checkout train.py ran in. An
        Ultralytics run (args.yaml) is read with its trainer's loop: the optimiser steps it
        took and the learning rate of each (warm-up from 0, optimizer=auto's AdamW lr), the
        EMA's updates, whether the validation losses ever changed, `pretrained=True` loading
        nothing into a YAML model, close_mosaic, AMP, the data YAML's `path:` reading.
    Why it zeroes P and R:
        It is the symptom itself: the run learnt nothing validation can see.
    Why it is an error:
        It is measured, not inferred: validation's own mAP@0.5 stayed below 0.01 in every
        epoch of the run's results.csv.
    Example:
        yolodiag run runs/train/exp
    Fix:
        Follow the causes in order: a run that ended inside the warm-up has not trained yet
        (train longer); then fix the cfg's findings, then `yolodiag overfit` the cfg.
    """
    run = facts.run
    if run.best_map50 is None or run.best_map50 >= ZERO_MAP or not run.losses_finite:
        return
    causes = run.causes(facts.transfer, width_mismatch(facts) if facts.transfer else None)
    plan = run.schedule
    yield Problem(
        f"{run.epochs} epochs: mAP@0.5 at most {run.best_map50:.4f}, precision at most "
        f"{run.best_precision:.4f}, recall at most {run.best_recall:.3f}, with finite losses; "
        "likely causes, the most evidence first: "
        + "; ".join(f"({i}) {text}" for i, (_, text) in enumerate(causes, 1)),
        "fix the causes in that order (a run that ended in its warm-up needs more epochs), "
        "then check the model with `yolodiag overfit`",
        Location(str(run.results_path)),
        {"epochs": run.epochs, "best_map50": run.best_map50,
         "causes": [text for _, text in causes], "cause_kinds": [kind for kind, _ in causes],
         "schedule": plan.as_dict() if plan else None, "nc": run.nc,
         "nc_source": run.nc_source})


@check("YD507", "run-incomplete", Severity.ERROR, Stage.RUN)
def run_incomplete(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A run folder train.py wrote (it has opt.yaml) whose results.csv is missing, empty or
        holds only its header: train.py appends one row to results.csv at the end of every
        epoch, after validation, so the run stopped before its first epoch finished (or is
        still in it). Where the cfg is found, its forward at the run's image size is named
        with it: the layer it crashes in and the code that explains it (a crash stops train.py
        in its first iteration), or that it runs, which leaves the data and the device.
    Why it zeroes P and R:
        No epoch finished, so nothing was validated: there are no P, R or mAP at all, and
        best.pt and last.pt were never written from a trained epoch.
    Why it is an error:
        The run produced no trained epoch: its results.csv has no row of metrics.
    Example:
        yolodiag run runs/train/exp   # results.csv holds only its header
    Fix:
        Read the end of train.py's console output for the exception that stopped it, fix it
        (`yolodiag check` the cfg at the run's --img with its --data), and run train.py again.
    """
    run = facts.run
    if run.results == "ok":
        return
    name = run.results_path.name  # results.csv, or the family's own file
    state = {"missing": f"no {name}", "empty": f"an empty {name}",
             "header-only": f"a {name} with only its header"}[run.results]
    crashes = facts.crashes if facts.trace is not None else []
    if crashes:
        named = f"; the cfg's forward crashes at {run.imgsz}: " + ", ".join(
            f"layer {c.layer} ({c.cause or 'YD202'})" for c in crashes)
    elif facts.trace is not None:
        named = (f"; the cfg's forward runs at {run.imgsz} here, so look outside the model "
                 "(the data, memory, the device)")
    else:
        named = ""
    yield Problem(
        f"{state}: train.py stopped before the first epoch finished (it writes a row after "
        f"every epoch's validation), or it is still in it{named}",
        "find the exception at the end of train.py's output and fix it, then train again",
        Location(str(run.results_path if run.results != "missing" else Path(run.path))),
        {"results_state": run.results,
         "cfg_crashes": [{"layer": c.layer, "code": c.cause or "YD202"} for c in crashes]})
