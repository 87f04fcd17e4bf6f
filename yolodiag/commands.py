"""One function per command: inputs in, a Report out. The CLI calls these; so can notebooks.

Each function runs the stages in order (spec -> build -> trace -> checks) and assembles the
report. A stage that cannot go on leaves its finding in the Facts, and the checks that need
its output are skipped. Nothing here prints or exits.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from yolodiag.findings import InputRefused, Severity
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
    findings = run_checks(facts, selection or Selection())
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


def traced_sizes(sizes, strides) -> list[tuple[int, int]]:
    """Each (height, width) rounded up to a multiple of the largest stride (at least 32), as
    YOLOv5's check_img_size does; duplicates removed, order kept."""
    gs = max(int(max(strides)), 32) if strides else 32
    return list(dict.fromkeys((math.ceil(h / gs) * gs, math.ceil(w / gs) * gs)
                              for h, w in sizes))
