"""Ultralytics 8.4.190's module table: every module name its stock detection YAMLs use, with the
rule its parse_model applies to it.

Ultralytics looks a module name up in `nn/tasks.py`'s globals (or torch.nn for `nn.X`); yolodiag
looks it up here. The sets follow parse_model's branches: `base_modules` (channel completion with
the width capped at max_channels before the width multiple), `repeat_modules` within it (the
repeat count inserted as the third argument), Concat, CBLinear and CBFuse, the heads, and the
fallback that passes raw arguments and keeps the input width. Classes are imported only when
building: the table is torch-free.
"""

from __future__ import annotations

from yolodiag.build.plan import ModuleEntry
from yolodiag.dialects.common.rules import ACTIVATIONS

_PACKAGE = "yolodiag.dialects.ultralytics"
CONV, BLOCK = f"{_PACKAGE}.conv", f"{_PACKAGE}.block"
ATTENTION, ELAN, HEADS = f"{_PACKAGE}.attention", f"{_PACKAGE}.elan", f"{_PACKAGE}.heads"
AREA = f"{_PACKAGE}.area_attention"
SEED = "yolodiag.dialects.yolov5.seed"  # the seed document's BasicBlock: one class, every tree

# parse_model's repeat_modules (all of them also in base_modules), by the file holding ours.
REPEATING = {
    BLOCK: ("C2f", "BottleneckCSP", "C1", "C2", "C3k2", "C3", "C3Ghost", "C3x", "RepC3"),
    ATTENTION: ("C2fPSA", "C2fCIB", "C2PSA"),
    AREA: ("A2C2f",),
}
# The rest of base_modules: channel completion, `number` copies stacked.
COMPLETED = {
    CONV: ("Conv", "ConvTranspose", "GhostConv", "DWConv", "Focus", "DWConvTranspose2d"),
    BLOCK: ("Bottleneck", "GhostBottleneck", "SPP", "SPPF"),
    ATTENTION: ("PSA", "SCDown"),
    ELAN: ("RepNCSPELAN4", "ELAN1", "ADown", "AConv", "SPPELAN"),
}
# torch.nn classes people put in YAMLs; parse_model passes their arguments through untouched.
TORCH_PASSTHROUGH = ("Upsample", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
                     "AdaptiveMaxPool2d", "ZeroPad2d", "ConstantPad2d", "ReflectionPad2d",
                     "ReplicationPad2d", "Identity", "Dropout", "Dropout2d", "PixelShuffle",
                     "PixelUnshuffle")
# Modules whose rows the head reads its layout from (parse_model clears `legacy` on them).
NON_LEGACY_HEAD = frozenset({"C3k2", "A2C2f", "C2fCIB"})


def _entries() -> dict[str, ModuleEntry]:
    table: dict[str, ModuleEntry] = {}

    def add(name: str, factory: str, rule: str, decided: str = "table") -> None:
        table[name] = ModuleEntry(name, factory, rule, decided=decided)

    for where, names in COMPLETED.items():
        for name in names:
            add(name, f"{where}:{name}", "completed")
    for where, names in REPEATING.items():
        for name in names:
            add(name, f"{where}:{name}", "completed+repeats")
    add("nn.ConvTranspose2d", "torch.nn:ConvTranspose2d", "completed")
    # The seed document adds BasicBlock to base_modules (not to repeat_modules).
    add("BasicBlock", f"{SEED}:BasicBlock", "completed", decided="seed")
    add("nn.BatchNorm2d", "torch.nn:BatchNorm2d", "batchnorm")
    add("Concat", f"{CONV}:Concat", "concat-sum")
    add("CBLinear", f"{ELAN}:CBLinear", "cblinear")
    add("CBFuse", f"{ELAN}:CBFuse", "cbfuse")
    add("Detect", f"{HEADS}:Detect", "anchor-free-detect")
    add("v10Detect", f"{HEADS}:v10Detect", "v10detect")
    # Silence passes its input on; as the first row Ultralytics builds it as nn.Identity.
    add("Silence", "torch.nn:Identity", "passthrough")
    for name in (*TORCH_PASSTHROUGH, *ACTIVATIONS):
        add(f"nn.{name}", f"torch.nn:{name}", "passthrough")
    return table


MODULES: dict[str, ModuleEntry] = _entries()
# Modules of Ultralytics' table that neither YOLOv5 v7.0's nor YOLOv7's has: a YAML using one
# is Ultralytics'.
ULTRALYTICS_ONLY = frozenset({
    "C2f", "C3k2", "C2PSA", "C2fPSA", "PSA", "SCDown", "C2fCIB", "A2C2f", "RepNCSPELAN4",
    "ELAN1", "ADown", "AConv", "SPPELAN", "CBLinear", "CBFuse", "v10Detect", "Silence",
    "RepC3"})
