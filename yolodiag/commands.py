"""One function per command: inputs in, a Report out. The CLI calls these; so can notebooks.

Each function runs the stages in order (spec -> build -> trace -> checks) and assembles the
report. A stage that cannot go on leaves its finding in the Facts, and the checks that need
its output are skipped. Nothing here prints or exits.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

from yolodiag.findings import COMMAND_STAGES, InputRefused, Severity, Unsupported
from yolodiag.report import Report, model_section

BUNDLED_MODEL = Path(__file__).parent / "reference" / "models" / "yolov5s-resnet18.yaml"
# 640 (training), 320, and the 384x640 (height x width) letterbox YOLOv5's rectangular
# validation gives a 16:9 image; each rounded up to the model's largest stride as YOLOv5 does.
DEFAULT_SIZES = ((640, 640), (320, 320), (384, 640))


def check(model: str | Path | None = None, sizes: tuple[tuple[int, int], ...] = (), *,
          selection=None, fail_on: Severity = Severity.ERROR) -> Report:
    """Read, build (meta device), trace at every size and run the checks on one model YAML.

    `sizes`: the --img sizes as the user gave them; () traces the defaults.
    """
    from yolodiag.checks import Facts, Selection, run_checks
    from yolodiag.reference.builder import build
    from yolodiag.spec import load_spec
    from yolodiag.trace import trace

    bundled = model is None
    path = BUNDLED_MODEL if bundled else Path(model)
    facts = Facts(str(path), requested_sizes=tuple(sizes))
    try:
        facts.spec = load_spec(path)
        with warnings.catch_warnings():  # torch's remarks on odd layers: the checks say more
            warnings.simplefilter("ignore", UserWarning)
            facts.built = build(facts.spec, device="meta", strict=False)
            facts.trace = trace(facts.built, traced_sizes(sizes or DEFAULT_SIZES,
                                                          facts.built.stride))
    except InputRefused as e:
        facts.stopped, stopped_by = e.finding, e
    else:
        stopped_by = None
    findings = run_checks(facts, selection or Selection(), COMMAND_STAGES["check"])
    section = (model_section(facts.built, facts.trace, bundled=bundled)
               if facts.trace is not None else None)
    try:
        assignment = facts.assignment if facts.trace is not None else None
    except Exception as e:  # a bug: YD404 reports it as YD001 (unless ignored); --debug shows it
        facts.check_errors.append(e)
        assignment = None
    return Report("check", section, findings, fail_on, path=str(path), bundled=bundled,
                  sections={"assignment": assignment.as_dict() if assignment else None},
                  errors=[e for e in (stopped_by, *facts.check_errors) if e is not None])


GRADFLOW_SIZE = (256, 256)


def gradflow(model: str | Path | None = None, img: tuple[int, int] = GRADFLOW_SIZE, *,
             batch: int = 2, device: str = "cpu", seed: int = 0, selection=None,
             fail_on: Severity = Severity.ERROR, modules: dict | None = None) -> Report:
    """Build the model with real weights (seeded) on `device`, run one forward and backward of
    YOLOv5's loss on the synthetic batch and run the gradient checks (YD601-YD607).

    `img` is rounded up to the largest stride, as YOLOv5 does. `modules`: extra module-table
    entries (name -> ModuleEntry), e.g. the tests' mutant blocks. Raises Unsupported for a
    model whose head is not Detect.
    """
    import torch

    from yolodiag.checks import Facts, Selection, run_checks
    from yolodiag.gradflow import measure
    from yolodiag.reference.builder import LayerFailed, build, forward_failure
    from yolodiag.reference.heads import Detect
    from yolodiag.spec import load_spec
    from yolodiag.synthetic import synthetic_batch
    from yolodiag.trace import trace

    modules = modules or {}
    bundled = model is None
    path = BUNDLED_MODEL if bundled else Path(model)
    facts = Facts(str(path), modules=modules)
    try:
        facts.spec = load_spec(path, extra_modules=frozenset(modules))
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore", UserWarning)
            # YOLOv5's weights for this seed: drawn on the CPU, as YOLOv5 builds, then moved,
            # so that a seed gives the same model on every device.
            torch.manual_seed(seed)
            built = build(facts.spec, modules=modules)
    except InputRefused as e:
        facts.stopped = e.finding
        return Report("gradflow", None, run_checks(facts, stages=COMMAND_STAGES["gradflow"]),
                      fail_on, path=str(path), bundled=bundled, errors=[e])
    built.model.to(device)
    built = dataclasses.replace(built, device=torch.device(device))
    head = built.model.model[-1]
    if type(head) is not Detect:
        raise Unsupported(f"{path}: layer {len(built.layers) - 1} {built.layers[-1].module}: "
                          "gradflow measures models with a Detect head; the mask loss of "
                          "Segment is not implemented")
    size = traced_sizes([img], built.stride)[0]
    facts.built = built
    images, targets = synthetic_batch(built.nc, size, batch, seed, device=device)
    try:
        facts.grads = measure(built, images, targets)
    except LayerFailed as e:  # the model builds, but not at this size: as YOLOv5 would crash
        raise forward_failure(facts.spec, e.index, f"{type(e.error).__name__}: {e.error}",
                              f"the train-mode forward at {size[0]}x{size[1]}") from e
    findings = run_checks(facts, selection or Selection(), COMMAND_STAGES["gradflow"])
    section = model_section(built, trace(built, [size]), bundled=bundled)
    return Report("gradflow", section, findings, fail_on, path=str(path), bundled=bundled,
                  sections={"gradflow": facts.grads.as_dict()}, errors=facts.check_errors)


def traced_sizes(sizes, strides) -> list[tuple[int, int]]:
    """Each (height, width) rounded up to a multiple of the largest stride (at least 32), as
    YOLOv5's check_img_size does; duplicates removed, order kept."""
    gs = max(int(max(strides)), 32) if strides else 32
    return list(dict.fromkeys((math.ceil(h / gs) * gs, math.ceil(w / gs) * gs)
                              for h, w in sizes))
