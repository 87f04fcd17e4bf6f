"""The `yolodiag weights` and `yolodiag run` commands (importing this module registers them):
what the training code does with a checkpoint, and a finished run's post-mortem. Thin like
the others: parse, call yolodiag.commands, hand the work to `_finish`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from yolodiag.cli.app import _finish, _write, app
from yolodiag.cli.options import (
    DebugOption,
    DialectOption,
    FailOn,
    FailOnOption,
    FormatOption,
    IgnoreOption,
    ModelArgument,
    ModulesOption,
    NcOption,
    OutputFormat,
    OutputOption,
    RuleOption,
    ScaleOption,
    SelectOption,
    _require,
    parse_dialect,
    parse_selection,
    user_modules,
)
from yolodiag.report import Run


@app.command("weights")
def weights_command(
    *,
    model: ModelArgument = None,
    weights: Annotated[Path, typer.Option("--weights",
                                          help="The checkpoint train.py is given.")],
    cfg: Annotated[bool, typer.Option(
        "--cfg-given/--no-cfg", help="Whether train.py also gets --cfg MODEL (without it, it "
                                     "builds the checkpoint's own YAML).")] = True,
    resume: Annotated[bool, typer.Option("--resume", help="As train.py --resume: the "
                                         "checkpoint's YAML, nothing excluded.")] = False,
    nc: NcOption = None,
    select: SelectOption,
    ignore: IgnoreOption,
    fail_on: FailOnOption = FailOn.error,
    fmt: FormatOption = OutputFormat.text,
    output: OutputOption = None,
    debug: DebugOption = False,
    modules: ModulesOption,
    rule: RuleOption,
    dialect: DialectOption = "auto",
    scale: ScaleOption = None,
) -> None:
    """What the training code does with --weights (train.py, Ultralytics' BaseModel.load):
    which model it builds, which tensors go into which layers, which stay random.

    The checkpoint is read without running anything in it: globals outside an allow-list are
    refused (YD504), a corrupt or truncated file (YD508) and another framework's checkpoint
    (YD509) are named for what they are. No YOLO code need be installed.
    """
    from yolodiag.findings import Severity

    selection = parse_selection(select, ignore)
    dialect = parse_dialect(dialect)

    def run() -> Run:
        from yolodiag import commands

        return Run("weights", [commands.weights(model, weights, cfg_given=cfg, resume=resume,
                                                nc=nc, selection=selection,
                                                fail_on=Severity(fail_on.value),
                                                modules=user_modules(modules, rule, model,
                                                                     dialect),
                                                dialect=dialect, scale=scale)])

    _finish(run, fmt, output, debug)


@app.command("run")
def run_command(
    *,
    folder: Annotated[Path, typer.Argument(help="A run folder train.py wrote (runs/train/exp).")],
    cfg: Annotated[Path | None, typer.Option(
        "--cfg", help="The model YAML the run trained (default: opt.yaml's cfg, where it can "
                      "be found).")] = None,
    weights: Annotated[Path | None, typer.Option(
        "--weights", help="The checkpoint it started from (default: opt.yaml's weights, "
                          "where found); must exist.")] = None,
    nc: Annotated[int | None, typer.Option(
        "--nc", min=1, help="The class count train.py built the model with (default: the "
                            "run's data YAML, its names winning over its nc, as in YOLOv5 "
                            "v7.0).")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Also write a PNG of the run's curves (needs matplotlib).")] = None,
    select: SelectOption,
    ignore: IgnoreOption,
    fail_on: FailOnOption = FailOn.error,
    fmt: FormatOption = OutputFormat.text,
    output: OutputOption = None,
    debug: DebugOption = False,
    modules: ModulesOption,
    rule: RuleOption,
    dialect: DialectOption = "auto",
) -> None:
    """Post-mortem of a finished training run: zero metrics (YD506), their causes ranked by
    evidence, a run that stopped in its first epoch (YD507); the cfg checked at its size.

    The folder is read in the dialect whose trainer wrote it (--dialect, else the one its
    files show: YOLOv5's results.csv, YOLOv7's results.txt, Ultralytics' args.yaml). The cfg,
    weights and data YAML its options name are looked for where it ran (the run folder less
    its save_dir), as given, and beside the run.
    """
    from yolodiag.findings import Severity

    selection = parse_selection(select, ignore)
    dialect = parse_dialect(dialect)
    _require("matplotlib", "--plot", "plot", plot)

    def run() -> Run:
        from yolodiag import commands

        return Run("run", [commands.run(folder, cfg=cfg, weights=weights, nc=nc,
                                        selection=selection, fail_on=Severity(fail_on.value),
                                        modules=user_modules(modules, rule, cfg, dialect),
                                        dialect=dialect)])

    def write_plot(result: Run) -> None:
        report = result.reports[0]
        if plot is not None and report.sections.get("run"):
            from yolodiag.plot import run_png

            _write(plot, "plot", lambda: run_png(report, plot))

    _finish(run, fmt, output, debug, after=write_plot)
