"""YOLOv7's module table: every module name its stock YAMLs use, with the rule its parse_model
(commit a207844) applies to it.

YOLOv7 resolves a module name with Python's eval over `models.yolo`'s globals; yolodiag looks it
up here. The sets follow that parse_model's branches: the channel-aware list (which, unlike
YOLOv5's, holds `nn.Conv2d` and not the C3 family), the repeat-insert list nested in it (every
CSP variant, `DownC`, `SPPCSPC`), `Concat`, `Shortcut`, `ReOrg`, the heads, and the fallback that
passes raw arguments through. Classes are imported only when building: the table is torch-free.
"""

from __future__ import annotations

from yolodiag.build.plan import ModuleEntry
from yolodiag.dialects.common.rules import ACTIVATIONS

BLOCKS = "yolodiag.dialects.yolov7.blocks"
CSP = "yolodiag.dialects.yolov7.csp"
HEADS = "yolodiag.dialects.yolov7.heads"
SEED = "yolodiag.dialects.yolov5.seed"  # the seed document's BasicBlock: one class, both trees

# torch.nn classes people put in YAMLs; parse_model passes their arguments through untouched.
TORCH_PASSTHROUGH = ("Upsample", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
                     "AdaptiveMaxPool2d", "ZeroPad2d", "ConstantPad2d", "ReflectionPad2d",
                     "ReplicationPad2d", "Identity", "Dropout", "Dropout2d", "PixelShuffle",
                     "PixelUnshuffle", "ConvTranspose2d")


def _entries() -> dict[str, ModuleEntry]:
    table: dict[str, ModuleEntry] = {}

    def add(name: str, factory: str, rule: str, decided: str = "table") -> None:
        table[name] = ModuleEntry(name, factory, rule, decided=decided)

    # The channel-aware list: c1 inserted, c2 width-scaled (unless it is the head's `no`).
    for name in ("Conv", "RepConv", "SPP", "Stem"):
        add(name, f"{BLOCKS}:{name}", "channels")
    add("Bottleneck", f"{CSP}:Bottleneck", "channels")
    add("nn.Conv2d", "torch.nn:Conv2d", "channels")
    # ... of which these also get the repeat count inserted as their third argument.
    for name in ("DownC", "SPPCSPC"):
        add(name, f"{BLOCKS}:{name}", "channels+repeats")
    for name in ("BottleneckCSPA", "BottleneckCSPB", "BottleneckCSPC", "ResCSPA", "ResCSPB",
                 "ResCSPC", "ResXCSPA", "ResXCSPB", "ResXCSPC"):
        add(name, f"{CSP}:{name}", "channels+repeats")
    # The seed document appends BasicBlock to the channel-aware list (not the repeat list).
    add("BasicBlock", f"{SEED}:BasicBlock", "channels", decided="seed")
    add("nn.BatchNorm2d", "torch.nn:BatchNorm2d", "batchnorm")
    add("Concat", f"{BLOCKS}:Concat", "concat-sum")
    add("Shortcut", f"{BLOCKS}:Shortcut", "shortcut")
    add("ReOrg", f"{BLOCKS}:ReOrg", "reorg")
    for name in ("Detect", "IDetect", "IAuxDetect"):
        add(name, f"{HEADS}:{name}", "detect")
    # Classes common.py defines that parse_model's branches do not name: raw args, c2 = c1.
    for name in ("MP", "SP", "ImplicitA", "ImplicitM"):
        add(name, f"{BLOCKS}:{name}", "passthrough")
    for name in (*TORCH_PASSTHROUGH, *ACTIVATIONS):
        add(f"nn.{name}", f"torch.nn:{name}", "passthrough")
    return table


MODULES: dict[str, ModuleEntry] = _entries()
# Modules of YOLOv7's table that YOLOv5 v7.0's has not: a YAML using one is YOLOv7's.
YOLOV7_ONLY = frozenset({"RepConv", "Stem", "DownC", "SPPCSPC", "BottleneckCSPA",
                         "BottleneckCSPB", "BottleneckCSPC", "ResCSPA", "ResCSPB", "ResCSPC",
                         "ResXCSPA", "ResXCSPB", "ResXCSPC", "Shortcut", "ReOrg", "IDetect",
                         "IAuxDetect", "MP", "SP", "ImplicitA", "ImplicitM"})
