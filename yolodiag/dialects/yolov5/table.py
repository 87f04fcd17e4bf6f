"""The closed table of module names a model YAML may use, each with its channel rule.

YOLOv5 resolves a YAML module name with Python's eval, so any expression runs. We resolve it
here instead, by plain lookup. Each entry names the class that builds it (imported only when
building, so the spec stage stays torch-free) and the channel rule `parse_model` v7.0 applies to
that class: its channel-aware set, its repeat-count set, BatchNorm2d, Concat, the heads, and the
fallback that passes raw arguments through for everything else, every `torch.nn` class included.
"""

from __future__ import annotations

from yolodiag.build.plan import ModuleEntry, canonical_name  # noqa: F401  (its spellings)
from yolodiag.dialects.common.rules import ACTIVATIONS

BLOCKS = "yolodiag.dialects.yolov5.blocks"
HEADS = "yolodiag.dialects.yolov5.heads"
SEED = "yolodiag.dialects.yolov5.seed"


def _entries() -> dict[str, ModuleEntry]:
    table: dict[str, ModuleEntry] = {}

    def add(name: str, factory: str, rule: str, decided: str = "table") -> None:
        table[name] = ModuleEntry(name, factory, rule, decided=decided)

    # parse_model's channel-aware set: c1 inserted, c2 width-scaled.
    for name in ("Conv", "GhostConv", "Bottleneck", "GhostBottleneck", "SPP", "SPPF", "DWConv",
                 "MixConv2d", "Focus", "CrossConv", "C3SPP", "DWConvTranspose2d"):
        add(name, f"{BLOCKS}:{name}", "channels")
    add("nn.ConvTranspose2d", "torch.nn:ConvTranspose2d", "channels")
    # ... of which these also take the repeat count (built once, with n inside; not C3SPP).
    for name in ("BottleneckCSP", "C3", "C3TR", "C3Ghost", "C3x"):
        add(name, f"{BLOCKS}:{name}", "channels+repeats")
    # The seed document adds BasicBlock to the channel-aware set (not to the repeat set).
    add("BasicBlock", f"{SEED}:BasicBlock", "channels", decided="seed")
    add("nn.BatchNorm2d", "torch.nn:BatchNorm2d", "batchnorm")
    add("Concat", f"{BLOCKS}:Concat", "concat-sum")
    add("Contract", f"{BLOCKS}:Contract", "contract")
    add("Expand", f"{BLOCKS}:Expand", "expand")
    add("Detect", f"{HEADS}:Detect", "detect")
    add("Segment", f"{HEADS}:Segment", "segment")
    # Classes common.py defines that parse_model does not know: raw args, c2 = c1.
    for name in ("TransformerLayer", "TransformerBlock"):
        add(name, f"{BLOCKS}:{name}", "passthrough")
    add("Proto", f"{HEADS}:Proto", "passthrough")
    # torch.nn classes people put in YAMLs; parse_model passes their args through untouched.
    for name in ("Upsample", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
                 "ZeroPad2d", "ConstantPad2d", "ReflectionPad2d", "ReplicationPad2d", "Identity",
                 "Dropout", "Dropout2d", "PixelShuffle", "PixelUnshuffle", "Conv2d",
                 *ACTIVATIONS):
        add(f"nn.{name}", f"torch.nn:{name}", "passthrough")
    return table


MODULES: dict[str, ModuleEntry] = _entries()
