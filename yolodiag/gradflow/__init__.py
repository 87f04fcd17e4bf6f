"""Gradient flow: one real forward and backward of YOLOv5's loss, measured layer by layer.

The package's face: `measure` (measure.py) runs the measurement, the probe (probe.py) finds the
residual adds and what their operands carry, and the results are plain values (values.py).
Other modules import from here, never from the submodules, so the split stays an internal
matter; nothing is defined here. `preserved` now lives in yolodiag.probes and is re-exported for
the callers that found it here.
"""

from yolodiag.gradflow.measure import measure
from yolodiag.gradflow.probe import SHORTCUT_ATTRIBUTES, _Probe
from yolodiag.gradflow.values import (
    Ablation,
    GradFlow,
    LayerGradient,
    MissingAdd,
    ResidualAdd,
    StageGradient,
)
from yolodiag.probes import preserved

__all__ = ["SHORTCUT_ATTRIBUTES", "Ablation", "GradFlow", "LayerGradient",
           "MissingAdd", "ResidualAdd", "StageGradient", "_Probe", "measure", "preserved"]
