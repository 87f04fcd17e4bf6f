"""One function per command: inputs in, a Report out. The CLI calls these; so can notebooks.

Each function runs the stages in order (spec -> build -> trace -> checks) and assembles the
report. A stage that cannot go on leaves its finding in the Facts, and the checks that need
its output are skipped. Nothing here prints or exits.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

from yolodiag.dialects import AUTO, DEFAULT, DIALECTS, choose_checkpoint, choose_file, choose_run
from yolodiag.findings import COMMAND_STAGES, Refused, Severity, Unsupported
from yolodiag.report import Report, model_section, provenance_sections, transfer_sections

BUNDLED_MODEL = DIALECTS[DEFAULT].bundled
# 640 (training), 320, and the 384x640 (height x width) letterbox YOLOv5's rectangular
# validation gives a 16:9 image; each rounded up to the model's largest stride as YOLOv5 does.
DEFAULT_SIZES = ((640, 640), (320, 320), (384, 640))


def check(model: str | Path | None = None, sizes: tuple[tuple[int, int], ...] = (), *,
          selection=None, fail_on: Severity = Severity.ERROR, weights: str | Path | None = None,
          nc: int | None = None, modules: dict | None = None, repo: str | Path | None = None,
          repo_python: str | None = None, data: str | Path | None = None,
          dialect: str = AUTO, scale: str | None = None) -> Report:
    """Read, build (meta device), trace at every size and run the checks on one model YAML.

    `sizes`: the --img sizes as the user gave them; () traces the defaults. `weights`: also
    what train.py would transfer from this checkpoint into the model (`nc`: the data's).
    `modules`: extra module-table entries (name -> ModuleEntry), the user's blocks. `repo`:
    build with the user's own YOLOv5 code instead (in a subprocess running `repo_python`).
    `data`: a data.yaml, whose labels are checked and whose class count the model gets (as
    train.py builds it), unless `nc` is given. `dialect`: the family the YAML is read as
    ("auto": the one that claims it). `scale`: the scale letter of a family with a scales
    table (None: as its code picks it, e.g. from the file name).
    """
    from yolodiag.checks import Selection, run_checks

    dataset = _read_data(data, model, dialect, nc, repo)
    nc = nc or (dataset.classes if dataset else None)
    if repo is not None:
        family = choose_file(_model_path(model), dialect).dialect
        if family.repo is None:
            raise Unsupported(f"--repo: yolodiag cannot build with a {family.title} checkout")
        if modules:
            raise Unsupported(f"--repo builds with your {family.possessive} own modules: --modules "
                              "and --rule do not apply to it")
        # Rounded to 32, not to the largest stride: that is known once their code has run.
        facts, stopped_by = family.repo.repo_traced(_model_path(model), tuple(sizes),
                                                    traced_sizes(sizes or DEFAULT_SIZES, None),
                                                    repo, repo_python, nc, dialect=dialect)
    else:
        facts, stopped_by = _traced(model, sizes, modules, nc, dialect, scale)
    facts.data = dataset
    sections = _data_section(facts)
    if weights is not None and stopped_by is None:
        stopped_by = _transfer_facts(facts, weights, nc, cfg_given=True, resume=False)
        sections.update(transfer_sections(facts))
    findings = run_checks(facts, selection or Selection(), COMMAND_STAGES["check"])
    try:
        assignment = facts.assignment if facts.trace is not None else None
    except Exception as e:  # a bug: YD404 reports it as YD001 (unless ignored); --debug shows it
        facts.check_errors.append(e)
        assignment = None
    return _report("check", facts, findings, fail_on,
                   {"assignment": assignment.as_dict() if assignment else None, **sections},
                   stopped_by, bundled=model is None)


def weights(model: str | Path | None, weights: str | Path, *, cfg_given: bool = True,
            resume: bool = False, nc: int | None = None, selection=None,
            fail_on: Severity = Severity.ERROR, modules: dict | None = None,
            dialect: str = AUTO, scale: str | None = None) -> Report:
    """What the training code does with `--weights`: the checkpoint read safely, the model
    it builds (the YAML, or the checkpoint's own: --no-cfg, --resume) and the tensors it
    transfers, per layer (YD501-YD505, YD510, YD511); without a cfg the checkpoint's family
    reads it (`choose_checkpoint`), else the YAML's."""
    from yolodiag.checks import Facts, Selection, run_checks
    from yolodiag.spec import load_spec

    path = _model_path(model)
    facts = Facts(str(path), modules=modules or {}, requested_dialect=dialect)
    stopped = None
    try:
        facts.spec = load_spec(path, extra_modules=frozenset(facts.modules), dialect=dialect,
                               scale=scale)
    except Refused as e:
        facts.stopped, stopped = e.finding, e
    writer = choose_checkpoint(weights, dialect) if not cfg_given or resume else None
    if stopped is None:
        stopped = _transfer_facts(facts, weights, nc, cfg_given=cfg_given, resume=resume,
                                  family=writer.dialect if writer else None)
    findings = run_checks(facts, selection or Selection(), COMMAND_STAGES["weights"])
    return _report("weights", facts, findings, fail_on, transfer_sections(facts), stopped,
                   bundled=model is None)


def run(folder: str | Path, *, cfg: str | Path | None = None,
        weights: str | Path | None = None, nc: int | None = None, selection=None,
        fail_on: Severity = Severity.ERROR, modules: dict | None = None,
        dialect: str = AUTO) -> Report:
    """A finished run folder, read in the dialect whose trainer wrote it: its options and
    results; the cfg, weights and data YAML it names (found where it ran, or given); the cfg
    checked at the run's image size and class count, the transfer, why the metrics stayed at
    zero."""
    from yolodiag.checks import Facts, Selection, run_checks

    selection, modules = selection or Selection(), modules or {}
    chosen = choose_run(folder, dialect)
    family, runs = chosen.dialect, chosen.dialect.runs
    if runs is None:
        raise Unsupported(f"yolodiag reads no {family.title} run folders yet")
    info = runs.read_run(folder)
    runs.locate_inputs(info, cfg, weights, nc)
    facts, stopped = Facts(info.path, modules=modules, requested_dialect=family.name), None
    if info.cfg_path is not None:
        # The cfg in the run's dialect: by its own sniff where that agrees (the clearer reason)
        read_as = dialect if dialect != AUTO or choose_file(info.cfg_path).dialect is family \
            else family.name
        facts, stopped = _traced(info.cfg_path, ((info.imgsz,) * 2,), modules, info.nc, read_as)
        if facts.spec is not None and read_as != dialect:  # by the run's name, not --dialect
            reason = f"the run folder is {family.possessive}: {chosen.reason}"
            facts.spec = dataclasses.replace(facts.spec, dialect_reason=reason)
            if facts.built is not None:  # the report reads the built model's spec
                facts.built.spec = facts.spec
        facts.data = info.data if runs.pillow_available() else None
        info.cfg_findings = run_checks(facts, selection, COMMAND_STAGES["check"])
        facts.stopped = None  # a refused cfg's finding is among cfg_findings already
        if info.nc is None and facts.built is not None:
            info.nc = facts.built.nc
    facts.run = info
    if stopped is None and info.cfg_path is not None and info.weights_path is not None:
        if facts.dialect.checkpoint is None:  # the transfer is left out, the rest goes on
            info.transfer_note = f"yolodiag reads no {facts.title} checkpoints yet"
        else:
            stopped = _transfer_facts(facts, info.weights_path, info.nc, cfg_given=True,
                                      resume=False)
    findings = info.cfg_findings + run_checks(facts, selection, COMMAND_STAGES["run"])
    return _report("run", facts, findings, fail_on,
                   {"run": info.as_dict(), **_data_section(facts),
                    **transfer_sections(facts)}, stopped, path=info.path)


def _transfer_facts(facts, weights: str | Path, nc: int | None, *, cfg_given: bool,
                    resume: bool, family=None) -> Refused | None:
    """Facts.checkpoint and Facts.transfer; the refusal (YD504/YD508/YD509, a build) if any.
    `family`: the dialect that reads the checkpoint (None: the YAML's)."""
    checkpoints = (family := family or facts.dialect).checkpoint
    if checkpoints is None:
        raise Unsupported(f"--weights: yolodiag reads no {family.title} checkpoints yet")
    try:
        facts.checkpoint = checkpoints.read_checkpoint(weights)
        names = dict(enumerate(facts.data.names)) if facts.data and facts.data.names else None
        facts.transfer = checkpoints.transfer(
            facts.checkpoint, facts.spec if cfg_given and not resume else None, nc,
            resume=resume, modules=facts.modules, names=names)
    except Refused as e:
        facts.stopped = e.finding
        return e
    return None


GRADFLOW_SIZE = OVERFIT_SIZE = (256, 256)


def gradflow(model: str | Path | None = None, img: tuple[int, int] | None = None, *,
             batch: int = 2, device: str = "cpu", seed: int = 0, selection=None,
             fail_on: Severity = Severity.ERROR, modules: dict | None = None,
             data: str | Path | None = None, dialect: str = AUTO) -> Report:
    """Build the model with real weights (seeded) on `device`, run one forward and backward of
    the family's loss on the synthetic batch and run the gradient checks (YD601-YD607).

    `img` (None: the family's `model.GRADFLOW_SIZE`, else 256x256) is rounded up to the largest
    stride, as YOLOv5 does. `modules`: extra module-table entries (name -> ModuleEntry), e.g.
    the tests' mutant blocks. `data`: the batch is the train split's first images (and the
    model has the data's classes). Raises Unsupported for a model the family cannot train.
    """
    from yolodiag.build.builder import LayerFailed, forward_failure
    from yolodiag.checks import Facts, Selection, run_checks
    from yolodiag.gradflow import measure
    from yolodiag.spec import load_spec
    from yolodiag.trace import trace

    modules = modules or {}
    path = _model_path(model)
    facts = Facts(str(path), modules=modules, data=_read_data(data, model, dialect),
                  requested_dialect=dialect)
    try:
        facts.spec = load_spec(path, extra_modules=frozenset(modules), dialect=dialect)
        built = _seeded_build(facts.spec, seed, device, modules, facts.data and facts.data.classes)
    except Refused as e:
        facts.stopped = e.finding
        return _report("gradflow", facts, run_checks(facts, stages=COMMAND_STAGES["gradflow"]),
                       fail_on, {}, e, bundled=model is None)
    img = img or getattr(built.dialect.model, "GRADFLOW_SIZE", GRADFLOW_SIZE)
    size = traced_sizes([img], built.stride)[0]
    facts.built = built
    # Anchor matchers take ordinary sizes; an anchor-free assigner, sizes per level's boxes.
    images, targets = _batch(facts.data, built.nc, size, batch, seed, device,
                             built.object_sizes if built.anchors is None else None)
    try:
        facts.grads = measure(built, images, targets)
    except LayerFailed as e:  # the model builds, but not at this size: as YOLOv5 would crash
        raise forward_failure(facts.spec, e.index, f"{type(e.error).__name__}: {e.error}",
                              f"the train-mode forward at {size[0]}x{size[1]}") from e
    facts.trace = trace(built, [size])  # the model table's shapes, at the measured size
    findings = run_checks(facts, selection or Selection(), COMMAND_STAGES["gradflow"])
    return _report("gradflow", facts, findings, fail_on,
                   {"gradflow": facts.grads.as_dict(), **_data_section(facts)},
                   bundled=model is None)


def overfit(model: str | Path | None = None, img: tuple[int, int] = OVERFIT_SIZE, *,
            batch: int = 2, steps: int | None = None, device: str = "cpu", amp: bool = False,
            seed: int = 0, selection=None, fail_on: Severity = Severity.ERROR,
            modules: dict | None = None, progress=None, data: str | Path | None = None,
            dialect: str = AUTO) -> Report:
    """`check`'s checks at `img`, then a seeded model trained on one synthetic batch until it
    memorises it (or the step budget ends), then the fit checks (YD701-YD706).

    A model `check` finds crashing is not trained: its findings say why. `progress` is called
    with the history after every step (the CLI's progress bar). `data`: train on the train
    split's first `batch` images, letterboxed, with the data's class count.
    """
    from yolodiag.checks import Selection, run_checks
    from yolodiag.overfit import FitSettings
    from yolodiag.overfit import overfit as train_on_one_batch

    modules = modules or {}
    dataset = _read_data(data, model, dialect)
    facts, stopped_by = _traced(model, (img,), modules, dataset and dataset.classes, dialect)
    facts.data = dataset
    selection = selection or Selection()
    if stopped_by is not None or not facts.trace.ok_sizes or facts.built.probe_failure:
        findings = run_checks(facts, selection, COMMAND_STAGES["check"])
        return _report("overfit", facts, findings, fail_on,
                       {"overfit": None, **_data_section(facts)}, stopped_by,
                       bundled=model is None)
    built = _seeded_build(facts.spec, seed, device, modules, facts.built.nc)
    if built.dialect.evaluation is None:
        raise Unsupported(f"overfit: yolodiag scores predictions as {built.dialect.possessive} "
                          "validation does, and knows none yet")
    size = facts.trace.sizes[0].img
    images, targets = _batch(facts.data, built.nc, size, batch, seed, device,
                             built.object_sizes)
    settings = FitSettings(amp=amp) if steps is None else FitSettings(steps=steps, amp=amp)
    settings = settings.for_family(built.dialect.evaluation)  # the thresholds it trains with
    facts.fit = train_on_one_batch(built, images, targets, settings, progress,
                                   _windows(facts.data, size, batch))
    findings = run_checks(facts, selection, COMMAND_STAGES["overfit"])
    return _report("overfit", facts, findings, fail_on,
                   {"overfit": facts.fit.as_dict(), **_data_section(facts)},
                   bundled=model is None)


def _model_path(model: str | Path | None) -> Path:
    return BUNDLED_MODEL if model is None else Path(model)


def _traced(model: str | Path | None, sizes, modules: dict | None = None,
            nc: int | None = None, dialect: str = AUTO, scale: str | None = None):
    """Facts of the spec, the meta-device build and the traces at `sizes` (the defaults for
    ()), and the refusal that stopped them, if one did."""
    from yolodiag.build.builder import build
    from yolodiag.checks import Facts
    from yolodiag.spec import load_spec
    from yolodiag.trace import trace

    modules = modules or {}
    path = _model_path(model)
    facts = Facts(str(path), requested_sizes=tuple(sizes), modules=modules,
                  requested_dialect=dialect)
    try:
        facts.spec = load_spec(path, extra_modules=frozenset(modules), dialect=dialect,
                               scale=scale)
        with warnings.catch_warnings():  # torch's remarks on odd layers: the checks say more
            warnings.simplefilter("ignore", UserWarning)
            for device in ("meta", "cpu"):
                facts.built = build(facts.spec, nc=nc, device=device, strict=False,
                                    modules=modules)
                facts.trace = trace(facts.built, traced_sizes(sizes or DEFAULT_SIZES,
                                                              facts.built.stride))
                if not _needs_values(facts.built, facts.trace):
                    break
    except Refused as e:
        facts.stopped = e.finding
        return facts, e
    return facts, None


def _read_data(data: str | Path | None, model, dialect: str, nc: int | None = None,
               repo: str | None = None):
    """--data read as the model's family reads it (None without it): `path:` by its rule,
    YOLOv5's relative to --repo's root."""
    if data is None:
        return None
    from yolodiag.data import read_data, yolov5_root

    rule = choose_file(_model_path(model), dialect).dialect.data_path_rule
    return read_data(data, nc, root=yolov5_root(repo), resolve_path=rule)


def _data_section(facts) -> dict:
    """The dataset as read, with the anchors' fit to its train labels where measurable."""
    if facts.data is None:
        return {}
    try:
        fit = facts.anchor_fit
    except Exception as e:  # a bug: YD405 reports it as YD001; --debug shows it
        facts.check_errors.append(e)
        fit = None
    return {"data": {**facts.data.as_dict(), "anchor_fit": fit.as_dict() if fit else None}}


def _batch(dataset, nc: int, size: tuple[int, int], batch: int, seed: int, device: str,
           anchors: list | None = None):
    """The batch gradflow and overfit run: --data's first train images, else this seed's
    synthetic batch, its objects sized after `anchors` (pixels per level) where given."""
    train = _train_split(dataset)
    if train is not None:
        from yolodiag.data import data_batch

        return data_batch(train, size, batch, device)
    from yolodiag.synthetic import synthetic_batch

    return synthetic_batch(nc, size, batch, seed, device=device, anchors=anchors)


def _windows(dataset, size: tuple[int, int], batch: int):
    """Where each image of `_batch`'s batch lies; None: the whole image (synthetic batches)."""
    train = _train_split(dataset)
    if train is None:
        return None
    from yolodiag.data import content_windows

    return content_windows(train, size, batch)


def _train_split(dataset):
    """The split `--data` batches come from, or None (no --data, or no train split)."""
    return dataset.splits.get("train") if dataset is not None else None


def _needs_values(built, traced) -> bool:
    """A forward that failed only because the meta device has no values (a user's block that
    reads `.item()` or branches on data): then the model is traced on real CPU tensors."""
    errors = [size.error for size in traced.failures]
    if built.probe_failure:
        errors.append(built.probe_failure[1])
    return built.device.type == "meta" and any("meta" in (e or "") for e in errors)


def _seeded_build(spec, seed: int, device: str, modules: dict, nc: int | None = None):
    """The model with its family's initial weights for this seed: drawn on the CPU, as the
    real code builds, then moved, so that a seed gives the same model on every device. Raises
    Unsupported for a model the dialect cannot train (YOLOv5: a head other than Detect)."""
    import torch

    from yolodiag.build.builder import build

    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(seed)
        built = build(spec, nc=nc, modules=modules)
    needs = (built.dialect.model.untrainable(built) if built.dialect.loss is not None
             else f"a loss yolodiag knows ({built.dialect.title} has none yet)")
    if needs is not None:
        raise Unsupported(f"{spec.path}: layer {len(built.layers) - 1} "
                          f"{built.layers[-1].module}: yolodiag trains and measures models with "
                          f"{needs}")
    built.model.to(device)
    return dataclasses.replace(built, device=torch.device(device))


def _report(command: str, facts, findings, fail_on: Severity, sections: dict,
            stopped_by: Exception | None = None, *, bundled: bool = False,
            path: str | None = None) -> Report:
    """The Report of one command: the model table where a trace exists, the refusal that
    stopped a stage and the exceptions of crashed checks (for --debug), the checks that ran."""
    section = (model_section(facts.built, facts.trace, bundled=bundled)
               if facts.trace is not None and facts.built is not None else None)
    errors = [e for e in (stopped_by, *facts.check_errors) if e is not None]
    sections = {**sections, **provenance_sections(facts)}  # whose code decided the model
    return Report(command, section, findings, fail_on, path=path or facts.path,
                  bundled=bundled, sections=sections, errors=errors, checked=tuple(facts.checked))


def traced_sizes(sizes, strides) -> list[tuple[int, int]]:
    """Each (height, width) rounded up to a multiple of the largest stride (at least 32), as
    YOLOv5's check_img_size does; duplicates removed, order kept."""
    gs = max(int(max(strides)), 32) if strides else 32
    return list(dict.fromkeys((math.ceil(h / gs) * gs, math.ceil(w / gs) * gs)
                              for h, w in sizes))
