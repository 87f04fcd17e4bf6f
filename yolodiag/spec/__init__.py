"""YAML text -> ModelSpec. `model`: the spec as pure data; `reader`: the YAML read as the chosen
dialect's parser reads it, nothing evaluated (see its docstring)."""

from yolodiag.spec.model import (
    Activation,
    ArgValue,
    LayerSpec,
    ModelSpec,
    Scaling,
    Symbol,
    absolute_source,
)
from yolodiag.spec.reader import KNOWN_LITERALS, SECTIONS, load_spec, module_names, parse_spec

__all__ = ["KNOWN_LITERALS", "SECTIONS", "Activation", "ArgValue", "LayerSpec", "ModelSpec",
           "Scaling", "Symbol", "absolute_source", "load_spec", "module_names", "parse_spec"]
