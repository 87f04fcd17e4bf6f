"""Dialects: what yolodiag knows about one family of YOLO model YAMLs, behind one shared engine.

A dialect is one frozen `Dialect` value in the plain dict `DIALECTS`, registered by its own
package (`yolodiag/dialects/<name>/`), which holds everything that family's code decides: the
module table and channel rules its parser applies, how its model class finishes a build (head
strides, anchors, priors), its loss, how its validation scores predictions (thresholds, NMS,
matching, AP). The engine (spec reader, builder, trace, checks, gradflow, overfit, reports) asks
the dialect and never names a module or head class of any family. Parts that need torch are
`Lazy`: registering a dialect, reading a YAML and `--help` stay torch-free.

`choose` picks the dialect of a YAML: the one `--dialect` names, else the first whose `sniff`
claims the YAML, else the default (YOLOv5 v7.0, the reading every YAML got before dialects).
`choose_checkpoint` does the same for a checkpoint train.py builds its own model from, and
`choose_run` for a training run's folder (each dialect's `checkpoint.claims`, `runs.claims`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yolodiag.build.plan import ModuleEntry, Rule
    from yolodiag.spec import ModelSpec

AUTO = "auto"
DEFAULT = "yolov5"  # what a YAML no dialect claims is read as


class Lazy:
    """A module imported on first attribute access, so that a dialect's torch parts load only
    when a stage needs them."""

    def __init__(self, module: str):
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self._module), name)

    def __repr__(self) -> str:
        return f"Lazy({self._module!r})"


@dataclass(frozen=True)
class Dialect:
    """One YAML family. `title` is what shared messages call its code ("YOLOv5's build");
    `capabilities` are matched against each check's `needs` (a check that needs anchors is
    skipped, not failed, for an anchor-free family)."""

    name: str
    title: str  # e.g. "YOLOv5": "YOLOv5's assignment", "YOLOv5 requires it"
    version: str  # e.g. "v7.0"
    modules: Mapping[str, ModuleEntry]  # the closed module table (torch-free)
    rules: Mapping[str, Rule]  # channel rules, by the name each table entry gives
    activations: tuple[str, ...]  # torch.nn activation classes the YAML may name
    required_keys: tuple[str, ...]  # top-level keys the family's parser reads unconditionally
    head_rules: frozenset[str]  # the rules of rows the family treats as its detection head
    head_outputs: Callable[[ModelSpec, int], int]  # outputs per head level for `nc` classes
    sniff: Callable[[Any], str | None]  # the YAML's data -> why it is ours, or None
    # PROBE_SIZE, activation_scope, measure_head, initialize_weights, untrainable: what the
    # family's model class does around the layers built; with capability "objectness",
    # objectness_prior; with "anchor-free", class_prior, largest_box_side, head_facts and
    # VALIDATION_CONF (tests/test_dialect_conformance.py holds the list)
    model: Any
    loss: Any = None  # HYP, train_hyp, loss_terms, compute_loss, assign, prior_loss
    # CONF, IOU (the thresholds of train.py's per-epoch validation), non_max_suppression,
    # correct (clipping and prediction/label matching), detection_metrics (P, R, mAP): how
    # the family's validation scores predictions, which overfit reproduces
    evaluation: Any = None
    checkpoint: Any = None  # read_checkpoint, transfer, embedded_spec, claims: --weights
    runs: Any = None  # claims, read_run, locate_inputs: a finished training run's folder
    repo: Any = None  # repo_traced: --repo, the model built by the user's own checkout
    checkout: Any = None  # find_checkout, read_registration: a checkout's parse_model, read
    stockmatch: Any = None  # differences: a user's class against the table's of that name
    namespace: Callable[[], dict[str, Any]] | None = None  # what a --modules file sees
    # The family's own names that advice cites: "block" (a channel-aware module), "head" (its
    # detection head), "stem" (a stride-2 stem row), "pooling" (its pyramid pooling block),
    # "blocks_file" (where a checkout defines its blocks), "parser_file" (the file holding
    # parse_model).
    advice: Mapping[str, str] = field(default_factory=dict)
    bundled: Path | None = None  # the example model `yolodiag check` runs without a YAML
    bundled_note: str = ""  # what that example is, in a few words
    capabilities: frozenset[str] = field(default_factory=frozenset)
    # Anchor rows (pixels) of the family's stock YAMLs -> the stride each was designed for.
    default_anchors: Mapping[tuple[int, ...], int] = field(default_factory=dict)
    # How the YAML's rows are scaled: (data, file, name given, --scale or None, line_of) ->
    # spec.Scaling, raising Refused; None: `depth_multiple`/`width_multiple` (default 1.0).
    read_scaling: Callable[..., Any] | None = None
    # The file the family's code reads for a name that is no file: path -> (file, why) or None.
    locate: Callable[[Path], tuple[Path, str] | None] | None = None
    # String arguments the family's parser resolves to its own values (`nc`, `anchors`).
    symbols: frozenset[str] = frozenset({"nc", "anchors"})
    # Head modules that read more than one input per anchor row (YOLOv7's IAuxDetect: two).
    head_inputs_per_row: Mapping[str, int] = field(default_factory=dict)
    # GFLOPs at 640x640 of the family's stock models by width_multiple (capability "stock-cost").
    stock_gflops: Mapping[float, float] = field(default_factory=dict)
    # ... or, for a family with several stock models per width: spec -> (GFLOPs, the stock
    # model's name) or None, which YD307 prefers when given.
    stock_cost: Callable[[Any], tuple[float, str] | None] | None = None
    # How its trainer resolves a data YAML's `path:`: (data YAML, path as written) -> (the
    # base, the rule in words); None: YOLOv5 v7.0's (the root train.py runs from).
    data_path_rule: Callable[[Path, str], tuple[Path, str]] | None = None
    # The profiler whose counting rules the family's GFLOPs follow (trace.py): "thop 0.1"
    # (YOLOv5 v7.0, YOLOv7), or "ultralytics-thop 2.2", which also counts matrix products run
    # outside layers (attention's q @ k) and counts a transposed conv over its input.
    profiler: str = "thop 0.1"
    # The head strides of the family's stock designs (capability "stock-strides", YD309).
    stock_strides: frozenset[tuple[int, ...]] = frozenset()

    @property
    def full_title(self) -> str:
        return f"{self.title} {self.version}"

    @property
    def possessive(self) -> str:
        """"YOLOv5's", "Ultralytics'": what messages say of the family's own things."""
        return f"{self.title}'" if self.title.endswith("s") else f"{self.title}'s"

    @property
    def head_modules(self) -> frozenset[str]:
        """The table's own head modules (their names: a user's class may take one over)."""
        return frozenset(name for name, entry in self.modules.items()
                         if entry.rule in self.head_rules)

    def example(self, key: str) -> str:
        """A name advice cites (see `advice`); the table's first module when the family gives
        none."""
        return self.advice.get(key) or next(iter(self.modules), key)

    def can(self, needs: frozenset[str]) -> bool:
        return needs <= self.capabilities


DIALECTS: dict[str, Dialect] = {}


def register(dialect: Dialect) -> Dialect:
    if dialect.name == AUTO or dialect.name in DIALECTS:
        raise ValueError(f"dialect {dialect.name!r} is registered twice or reserved")
    DIALECTS[dialect.name] = dialect
    return dialect


def unregister(name: str) -> None:
    """Remove a dialect registered at run time (tests)."""
    if name == DEFAULT:
        raise ValueError("the default dialect cannot be removed")
    DIALECTS.pop(name, None)


@dataclass(frozen=True)
class Chosen:
    """The dialect a YAML is read as, and why (the report says both)."""

    dialect: Dialect
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.dialect.name, "title": self.dialect.full_title,
                "reason": self.reason}


class UnknownDialect(ValueError):
    pass


def choose(data: Any, requested: str = AUTO) -> Chosen:
    """The dialect for a YAML's data: `requested` unless it is "auto", else the first that
    claims the data (in registration order, the default last), else the default."""
    if requested != AUTO:
        if requested not in DIALECTS:
            raise UnknownDialect(f"unknown dialect {requested!r}: choose one of "
                                 f"{', '.join(names())}")
        return Chosen(DIALECTS[requested], f"--dialect {requested}")
    default = DIALECTS[DEFAULT]
    return _first_claim(lambda dialect: dialect.sniff(data)) or Chosen(
        default, f"no dialect claims it: read as {default.full_title}, the default")


def _first_claim(claims: Callable[[Dialect], str | None]) -> Chosen | None:
    """The first dialect (in registration order, the default last) for which `claims` gives a
    reason, with that reason; None when none does."""
    for dialect in [d for name, d in DIALECTS.items() if name != DEFAULT] + [DIALECTS[DEFAULT]]:
        reason = claims(dialect)
        if reason:
            return Chosen(dialect, reason)
    return None


def choose_run(folder: str | Path, requested: str = AUTO) -> Chosen:
    """The dialect of a training run's folder: `requested` unless it is "auto", else the first
    whose `runs.claims(folder)` recognises the files its train.py writes (the default last),
    else the default."""
    if requested != AUTO:
        return choose(None, requested)
    folder = Path(folder)
    default = DIALECTS[DEFAULT]
    return _first_claim(
        lambda dialect: dialect.runs.claims(folder) if dialect.runs is not None else None
    ) or Chosen(default, f"no dialect claims the folder: read as {default.full_title}'s, "
                         "the default")


def located_file(path: str | Path) -> Path | None:
    """The file a family's code reads for a name that is no file (yolo11n.yaml: yolo11.yaml
    at scale n), the first registered family's that finds one; None where none does."""
    return next((found[0] for d in DIALECTS.values() if d.locate
                 and (found := d.locate(Path(path)))), None)


def choose_file(path: str | Path | None, requested: str = AUTO) -> Chosen:
    """`choose` for a YAML file before it is read in full (for --modules, --repo and --data,
    which need the dialect first; a name that is no file, as a family's code resolves it); a
    file that cannot be read gets the default, and the spec reader says why it cannot."""
    import yaml

    from yolodiag.yaml_text import ascii_text

    data = None
    if path is not None and not Path(path).is_file():  # a name a family's code resolves
        path = located_file(path) or path
    if path is not None:
        try:
            data = yaml.safe_load(ascii_text(Path(path).read_bytes())[0])
        except (OSError, yaml.YAMLError):
            pass
    return choose(data, requested)


def choose_checkpoint(path: str | Path, requested: str = AUTO) -> Chosen | None:
    """The dialect whose training code wrote a checkpoint, for when no --cfg decides it: the
    one `--dialect` names, else the first whose checkpoint part claims the file (from the
    globals its pickle names, nothing unpickled), else None (the YAML's dialect reads it)."""
    if requested != AUTO:
        return choose(None, requested)
    return _first_claim(lambda dialect: dialect.checkpoint.claims(path)
                        if dialect.checkpoint is not None else None)


def names() -> list[str]:
    """What `--dialect` accepts."""
    return [AUTO, *DIALECTS]


def dialect_of(spec: ModelSpec) -> Dialect:
    return DIALECTS[spec.dialect or DEFAULT]


def chosen(spec: ModelSpec) -> Chosen:
    """The dialect a spec was read as, and the reader's reason."""
    return Chosen(dialect_of(spec), spec.dialect_reason or "the default")


def _register_packages() -> None:
    """Each package in this folder registers its dialect when imported: the default first, so
    that a new family is one folder and no shared file changes."""
    import pkgutil

    importlib.import_module(f"{__name__}.{DEFAULT}")
    for package in pkgutil.iter_modules(__path__):
        if package.ispkg:
            importlib.import_module(f"{__name__}.{package.name}")


_register_packages()
