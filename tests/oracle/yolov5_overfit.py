"""Run inside an interpreter that has the `yolov5` pip package (v7.0): the one-batch overfit
experiment done with YOLOv5's own code, for comparison with `yolodiag overfit`. Used as a black
box by tests/test_yolov5_oracle.py; not part of yolodiag.

    python yolov5_overfit.py cases.pt out.pt [--basicblock FILE --cache DIR]

cases.pt (torch.save, weights_only): {name: case}, each case a dict with "yaml", "basicblock"
(bool: build with a private copy of the package that knows the seed's BasicBlock, made by
yolov5_patch.py from --basicblock in --cache), "nc", "seed", "hyp", "images" (b, 3, h, w),
"targets" (n, 6: image, class, x, y, w, h normalised), "steps", "eval_every", "pass_mark",
"conf", "iou"; optional "lr" (0.01), "momentum" (0.937), "weight_decay" (5e-4),
"max_grad_norm" (10.0), and for diagnosis "multi_label" (True, as val.py) and "clip" (True:
boxes clipped to the image, as val.py's scale_boxes does for an image of the network's size),
"save_state" (False: also return the model's final state_dict, to evaluate it elsewhere),
"threads" (torch's default: the caller's count, since rounding, and so the run, depends on it).

Per case: torch.manual_seed(seed), Model(yaml, nc=nc), model.hyp = hyp, ComputeLoss(model),
train.py's optimiser (smart_optimizer: SGD, Nesterov, three groups), then for step 0..steps:
at every eval_every-th step and the last, the batch predicted in train mode (BatchNorm on batch
statistics, Detect set to decode) and eval mode, before that step's update, each scored with
val.py's functions (non_max_suppression, process_batch, ap_per_class); stop when the eval-mode
mAP@0.5 reaches pass_mark; otherwise one training step (forward, ComputeLoss, backward,
clip_grad_norm_ of all parameters, optimiser step). No warm-up, no EMA, no AMP, no gradient
accumulation. out.pt: per case {"steps": [{step, loss, box, obj, cls, grad_norm}],
"evaluations": [{step, mode, mp, mr, map50, map, detections}], "passed_at", "nonfinite_step",
"seconds", "package"} (and "state" with save_state).
"""

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics otherwise probes the network on import

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from yolov5_patch import patched_package  # noqa: E402  (this folder is sys.path[0])

if not hasattr(np, "trapz"):  # NumPy 2.4 removed the alias YOLOv5's compute_ap still calls
    np.trapz = np.trapezoid


def yolov5(root: Path | None) -> SimpleNamespace:
    """YOLOv5's functions from the installed package (root None) or from the copy in `root`.
    Switching drops every yolov5 module already imported, so the copy's are imported fresh."""
    for name in [m for m in sys.modules if m == "yolov5" or m.startswith("yolov5.")]:
        del sys.modules[name]
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    elif root is None:
        sys.path[:] = [p for p in sys.path if not p.endswith("yolov5-basicblock")]
    import yolov5 as package
    from yolov5.models.common import Conv
    from yolov5.models.yolo import Model
    from yolov5.utils.general import non_max_suppression, scale_boxes, xywh2xyxy
    from yolov5.utils.loss import ComputeLoss
    from yolov5.utils.metrics import ap_per_class
    from yolov5.utils.torch_utils import smart_optimizer
    from yolov5.val import process_batch

    return SimpleNamespace(path=str(Path(package.__file__).parent), Conv=Conv, Model=Model,
                           ComputeLoss=ComputeLoss, smart_optimizer=smart_optimizer,
                           non_max_suppression=non_max_suppression, scale_boxes=scale_boxes,
                           xywh2xyxy=xywh2xyxy, process_batch=process_batch,
                           ap_per_class=ap_per_class)


def evaluate(v5, model, case, step: int, mode: str) -> dict:
    """The batch predicted in `mode` and scored the way val.py scores a validation batch."""
    images, targets = case["images"], case["targets"].clone()
    detect = model.model[-1]
    saved = [(b, b.detach().clone()) for b in model.buffers()]  # BatchNorm running statistics
    with torch.no_grad():
        model.train(mode == "train")
        detect.training = False  # Detect decodes; in train mode BatchNorm uses batch statistics
        decoded = model(images)[0]
        for buffer, value in saved:
            buffer.copy_(value)
    model.train()
    detections = v5.non_max_suppression(decoded, case["conf"], case["iou"], labels=[],
                                        multi_label=case.get("multi_label", True),
                                        agnostic=False, max_det=300)
    batch, _, height, width = images.shape
    targets[:, 2:] *= torch.tensor((width, height, width, height))  # to pixels
    iouv = torch.linspace(0.5, 0.95, 10)
    native = ((1.0, 1.0), (0.0, 0.0))  # the images are their own native size: no letterbox
    stats = []
    for i, found in enumerate(detections):
        labels = targets[targets[:, 0] == i, 1:]
        correct = torch.zeros(len(found), len(iouv), dtype=torch.bool)
        if not len(found):
            if len(labels):
                stats.append((correct, torch.zeros(0), torch.zeros(0), labels[:, 0]))
            continue
        boxes = found.clone()
        if case.get("clip", True):
            v5.scale_boxes(images.shape[2:], boxes[:, :4], (height, width), native)
        if len(labels):
            truth = v5.xywh2xyxy(labels[:, 1:5])
            if case.get("clip", True):
                v5.scale_boxes(images.shape[2:], truth, (height, width), native)
            correct = v5.process_batch(boxes, torch.cat((labels[:, 0:1], truth), 1), iouv)
        stats.append((correct, found[:, 4], found[:, 5], labels[:, 0]))
    stats = [torch.cat(column, 0).numpy() for column in zip(*stats)]
    mp = mr = map50 = map_ = 0.0
    if len(stats) and stats[0].any():
        _, _, p, r, _, ap, _ = v5.ap_per_class(*stats, plot=False,
                                               names=dict(enumerate(model.names)))
        mp, mr, map50, map_ = (float(x) for x in (p.mean(), r.mean(), ap[:, 0].mean(),
                                                  ap.mean(1).mean()))
    return {"step": step, "mode": mode, "mp": mp, "mr": mr, "map50": map50, "map": map_,
            "detections": sum(len(d) for d in detections)}


def run_case(v5, case) -> dict:
    start = time.perf_counter()
    if "threads" in case:
        torch.set_num_threads(case["threads"])
    v5.Conv.default_act = nn.SiLU()  # a YAML's `activation:` would leak into later models
    torch.manual_seed(case["seed"])
    model = v5.Model(case["yaml"], nc=case["nc"])
    model.hyp = dict(case["hyp"])
    compute_loss = v5.ComputeLoss(model)
    optimizer = v5.smart_optimizer(model, "SGD", case.get("lr", 0.01),
                                   case.get("momentum", 0.937), case.get("weight_decay", 5e-4))
    images, targets, steps = case["images"], case["targets"], case["steps"]
    result = {"steps": [], "evaluations": [], "passed_at": None, "nonfinite_step": None,
              "package": v5.path}
    for step in range(steps + 1):
        if step % case["eval_every"] == 0 or step == steps:
            for mode in ("train", "eval"):
                result["evaluations"].append(evaluate(v5, model, case, step, mode))
            if result["evaluations"][-1]["map50"] >= case["pass_mark"]:
                result["passed_at"] = step
                break
        if step == steps:
            break
        model.train()
        loss, items = compute_loss(model(images), targets)
        if not torch.isfinite(loss).all():
            result["nonfinite_step"] = step
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(),
                                             max_norm=case.get("max_grad_norm", 10.0))
        optimizer.step()
        box, obj, cls = (float(x) for x in items)
        result["steps"].append({"step": step, "loss": float(loss.detach()), "box": box,
                                "obj": obj, "cls": cls, "grad_norm": float(grad_norm)})
    result["seconds"] = time.perf_counter() - start
    if case.get("save_state", False):
        result["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--basicblock", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/yolodiag-oracle"))
    args = parser.parse_args()
    cases = torch.load(args.cases, weights_only=True)
    if any(c["basicblock"] for c in cases.values()) and args.basicblock is None:
        parser.error("a case needs BasicBlock: give --basicblock FILE")
    out = {}
    # The stock package first, then the patched copy: one switch at most.
    for patched in (False, True):
        names = [n for n, c in cases.items() if bool(c["basicblock"]) == patched]
        if names:
            v5 = yolov5(patched_package(args.basicblock, args.cache) if patched else None)
            for name in names:
                out[name] = run_case(v5, cases[name])
    torch.save({name: out[name] for name in cases}, args.out)


if __name__ == "__main__":
    main()
