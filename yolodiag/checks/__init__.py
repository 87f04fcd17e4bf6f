"""The checks: one module per family of codes (FINDINGS.md). Importing this package registers
every check in `yolodiag.findings.REGISTRY`; `run_checks` runs them over one model's Facts."""

from yolodiag.checks import (  # noqa: F401  (registration)
    anchor_free,
    anchors,
    blocks,
    cost,
    data,
    fit,
    geometry,
    gradients,
    scales,
    schema,
    training_state,
    transfer,
    width,
    wiring,
)
from yolodiag.checks.engine import Facts, Selection, run_checks
from yolodiag.findings import REGISTRY

__all__ = ["REGISTRY", "Facts", "Selection", "run_checks"]
