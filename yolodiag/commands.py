"""One function per command: inputs in, a Report out. The CLI calls these; so can notebooks.

Each function runs the stages in order (spec -> build -> trace -> ...) and assembles the
report. Nothing here prints or exits.
"""

from __future__ import annotations

from pathlib import Path

from yolodiag.report import Report, model_section
from yolodiag.spec import load_spec

BUNDLED_MODEL = Path(__file__).parent / "reference" / "models" / "yolov5s-resnet18.yaml"
DEFAULT_SIZES = ((640, 640),)


def check(model: str | Path | None = None,
          sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES) -> Report:
    """Build the model on the meta device, trace it at every (height, width), report it."""
    from yolodiag.reference.builder import build, forward_failure
    from yolodiag.trace import trace

    bundled = model is None
    spec = load_spec(BUNDLED_MODEL if bundled else model)
    built = build(spec, device="meta")
    traced = trace(built, list(sizes))
    for size in traced.sizes:
        if not size.ok:
            h, w = size.img
            raise forward_failure(spec, size.failed_layer, size.error,
                                  f"the forward pass at {h}x{w}")
    return Report("check", model_section(built, traced, bundled=bundled))
