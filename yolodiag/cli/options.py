"""The command line's shared options, each declared once, and the parsers of option values.

An option here is a typer `Annotated` alias carrying its flags, type and help, used by every
command that takes it; the command names the parameter and, for a single value, gives its
default in the signature (typer forbids a default inside `Annotated`). List options carry their
empty default as `default_factory=list`, so that no signature repeats a mutable `[]`; that is
why the commands take their parameters keyword-only (an option with no default may then sit
anywhere, and a signature's order is the order `--help` lists them in). The parsers turn option
values into what yolodiag.commands takes: sizes, a Selection, a dialect, module-table
entries. Nothing
here runs a command or imports torch at import time: `yolodiag --help` must stay instant.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Annotated

import typer

from yolodiag.cli.app import stderr
from yolodiag.dialects import DEFAULT, DIALECTS
from yolodiag.findings import Unsupported
from yolodiag.report import EXIT_BAD_INPUT


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"
    sarif = "sarif"
    junit = "junit"
    github = "github"


class FailOn(str, enum.Enum):
    error = "error"
    warning = "warning"
    info = "info"


_DEFAULT = DIALECTS[DEFAULT]
MODEL_HELP = (f"Model YAML(s) ({_DEFAULT.title} format, or another dialect's: --dialect); several "
              "give one summary and one exit code. Omitted: the bundled example, "
              f"{_DEFAULT.bundled_note}.")
ONE_MODEL_HELP = (f"Model YAML ({_DEFAULT.title} format, or another dialect's: --dialect). "
                  f"Omitted: the bundled example, {_DEFAULT.bundled_note}.")
IMG_HELP = ("Input size to trace: N for NxN or HxW (height x width), e.g. 384x640; repeat the "
            "option or separate with commas for several sizes. The first is the report's size. "
            "Sizes are rounded up to the largest stride, as YOLOv5 does (YD305). "
            "Default: 640, 320 and 384x640.")
SELECT_HELP = ("Run only checks whose code starts with one of these prefixes (repeat or comma-"
               "separate, e.g. YD3,YD401); also enables on-request checks such as YD308.")
IGNORE_HELP = ("Skip checks whose code starts with one of these prefixes. A refused YAML "
               "(YD100-YD105) or a model that cannot be built (YD202) is always reported.")
FAIL_ON_HELP = "Exit 1 when a finding has this severity or a higher one."

MODULES_HELP = ("A Python file with your own blocks (classes as pasted into the family's "
                "common.py); repeatable. The file is EXECUTED, with torch, nn, F, math, np and "
                f"yolodiag's blocks of that family ({_DEFAULT.title}: "
                f"{_DEFAULT.example('block')}...) in scope; its nn.Module classes join the "
                "module table and may replace stock names. Channel rules: "
                "YOLODIAG_RULES = {'Name': 'channels'} in the file, or --rule.")
RULE_HELP = ("Name=rule: how parse_model completes that module's row; repeatable. Rules: "
             "channels, channels+repeats, passthrough, out=args0, input, concat-sum, "
             "concat-max, detect. Undeclared --modules blocks get a rule inferred from their "
             "constructor (YD110).")
DIALECT_HELP = ("The YOLO family the YAML is written for: auto (the dialect that claims the "
               f"YAML; one none claims is read as {_DEFAULT.full_title}) or one of "
               f"{', '.join(DIALECTS)}. The report says which, and why.")
DATA_HELP = ("A YOLOv5 data YAML: its splits and labels are checked as train.py reads them "
             "(YD801-YD803, YD109, YD405 on the train labels), and the model gets its class "
             "count (needs Pillow: pip install 'yolodiag[data]').")

# The model: several YAMLs for check, one for the commands that run or load one model.
ModelsArgument = Annotated[list[Path] | None, typer.Argument(help=MODEL_HELP, show_default=False)]
ModelArgument = Annotated[Path | None, typer.Argument(help=ONE_MODEL_HELP, show_default=False)]
# --img: check traces several sizes; gradflow and overfit run the model at one.
SizesOption = Annotated[list[str], typer.Option("--img", help=IMG_HELP, show_default=False,
                                                default_factory=list)]
SizeOption = Annotated[str, typer.Option("--img", help="Input size, N or HxW; rounded up to the "
                                         "largest stride.")]
# The options every reporting command shares.
SelectOption = Annotated[list[str], typer.Option("--select", help=SELECT_HELP, show_default=False,
                                                 default_factory=list)]
IgnoreOption = Annotated[list[str], typer.Option("--ignore", help=IGNORE_HELP, show_default=False,
                                                 default_factory=list)]
FailOnOption = Annotated[FailOn, typer.Option("--fail-on", help=FAIL_ON_HELP)]
FormatOption = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]
OutputOption = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Write the report to this file instead of stdout.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
# The user's own blocks, on every command that builds a model.
ModulesOption = Annotated[list[Path], typer.Option("--modules", help=MODULES_HELP,
                                                   show_default=False, default_factory=list)]
RuleOption = Annotated[list[str], typer.Option("--rule", help=RULE_HELP, show_default=False,
                                               default_factory=list)]
DataOption = Annotated[Path | None, typer.Option("--data", help=DATA_HELP, show_default=False)]
DialectOption = Annotated[str, typer.Option("--dialect", help=DIALECT_HELP)]
ScaleOption = Annotated[str | None, typer.Option(
    "--scale", show_default=False,
    help="The scale to build a YAML with a `scales` table at (Ultralytics: n, s, m, l, x; "
         "default: the letter in the file name, as Ultralytics reads it, else the first).")]
# The class count train.py builds the model with (the run command's own --nc reads the run).
NcOption = Annotated[int | None, typer.Option(
    "--nc", min=1, help="The data's class count, which train.py builds the model with "
                        "(default: the YAML's nc).")]
# ... and those of the commands that run the model once (gradflow, overfit).
DeviceOption = Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:K.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seeds the weights and the synthetic "
                                         "batch.")]


def parse_sizes(values: list[str]) -> tuple[tuple[int, int], ...]:
    """['640', '320,640x384'] -> ((640, 640), (320, 320), (640, 384)); BadParameter otherwise."""
    sizes = []
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            parts = item.lower().split("x")
            if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
                raise typer.BadParameter(f"{item!r} is not N or HxW with positive integers",
                                         param_hint="--img")
            h = int(parts[0])
            sizes.append((h, int(parts[-1])))
    if values and not sizes:
        raise typer.BadParameter("give at least one size", param_hint="--img")
    return tuple(dict.fromkeys(sizes))


def parse_prefixes(values: list[str], option: str) -> tuple[str, ...]:
    """['YD3,yd401'] -> ('YD3', 'YD401'); a prefix that matches no code is a usage error."""
    from yolodiag.checks import Selection

    prefixes = tuple(p.strip().upper() for v in values for p in v.split(",") if p.strip())
    unknown = Selection(prefixes).unknown_prefixes()
    if unknown:
        raise typer.BadParameter(f"{', '.join(unknown)} matches no code (see `yolodiag rules`)",
                                 param_hint=option)
    return prefixes


def parse_selection(select: list[str], ignore: list[str]):
    """--select and --ignore as a Selection; an unknown prefix is a usage error."""
    from yolodiag.checks import Selection

    return Selection(parse_prefixes(select, "--select"), parse_prefixes(ignore, "--ignore"))


def parse_dialect(value: str) -> str:
    """--dialect: auto or a registered dialect's name; anything else is a usage error."""
    from yolodiag.dialects import names

    if value not in names():
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(names())}",
                                 param_hint="--dialect")
    return value


def user_modules(files: list[Path], rules: list[str], model: Path | None = None,
                 dialect: str = "auto") -> dict:
    """--modules and --rule as module-table entries, in the namespace of the model's dialect
    (runs the files: inside `_finish`, so their errors become one line and exit 2)."""
    if not files and not rules:
        return {}
    from yolodiag.dialects import choose_file
    from yolodiag.usermodules import load_modules

    return load_modules(files, rules, choose_file(model, dialect).dialect)


def _one_run_inputs(img: str | None, device: str, select: list[str], ignore: list[str]):
    """gradflow's and overfit's shared options, checked: (one size, Selection)."""
    if img is None:  # the command's default for the model's family
        return None, parse_selection(select, ignore)
    sizes = parse_sizes([img])
    if len(sizes) != 1:
        raise typer.BadParameter("give one size", param_hint="--img")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise typer.BadParameter(f"{device!r} is not cpu, cuda or cuda:K", param_hint="--device")
    return sizes[0], parse_selection(select, ignore)


def _require(package: str, option: str, extra: str, value) -> None:
    """An option that needs an optional package: one line and exit 2 before any work."""
    import importlib.util

    if value is not None and importlib.util.find_spec(package) is None:
        stderr.print(f"yolodiag: {option} needs {package}: pip install 'yolodiag[{extra}]'",
                     markup=False)
        raise typer.Exit(EXIT_BAD_INPUT)


def _check_device(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available():
            raise Unsupported(f"--device {device}: CUDA is not available to this torch "
                              f"({torch.__version__})")
        if index >= torch.cuda.device_count():
            raise Unsupported(f"--device {device}: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
