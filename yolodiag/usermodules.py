"""A user's own blocks (`--modules FILE.py`): their classes, with the channel rule of each.

People paste blocks into YOLOv5's `models/common.py` and register them (or forget to) in
`parse_model`. To diagnose their real block rather than a copy, the file is executed, on the
user's explicit request, in a namespace that offers what common.py offers (torch, nn, F, math,
numpy, and our Conv, C3, autopad...), so a class pasted from common.py runs unchanged. Every
`nn.Module` class the file defines joins the module table, replacing a stock class of the
same name (as a redefinition in common.py does).

How parse_model completes a block's row is its channel rule. It is decided, in this order:
`--rule Name=rule` on the command line; `YOLODIAG_RULES = {"Name": rule}` in the file (a rule
name, or a function of `RuleInput` mirroring a dedicated parse_model branch); for a file inside
a YOLOv5 checkout, that checkout's models/yolo.py, read statically (registration.py): a class
in none of its parse_model branches gets its fallback; else inferred from the constructor:
first parameters named as input and output widths (c1, c2; in_channels, out_channels...) are
read as channel-aware, anything else gets YOLOv5's fallback (passthrough). How each rule was
decided is kept on the entry, for the checks to report (YD106, YD110).

A class named like an entry of the module table (a stock class of the user's common.py, the
seed's BasicBlock) that behaves like it (stockmatch.py) is that entry: the table's class is
built. One that differs replaces it, with what differs kept on the entry (YD111).
"""

from __future__ import annotations

import inspect
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from yolodiag.build.plan import ModuleEntry, canonical_name
from yolodiag.dialects import DEFAULT, DIALECTS, Dialect
from yolodiag.findings import Unsupported

# The rules a user may declare (rules.RULES also holds the stock-only ones: batchnorm...).
DECLARABLE = ("channels", "channels+repeats", "passthrough", "out=args0", "input", "concat-sum",
              "concat-max", "detect")

# Parameter names that mark a constructor's first two arguments as input and output widths.
CHANNEL_PARAMS = {("c1", "c2"), ("in_channels", "out_channels"), ("ch_in", "ch_out"),
                  ("inp", "oup"), ("in_ch", "out_ch"), ("c_in", "c_out"), ("cin", "cout"),
                  ("in_planes", "out_planes"), ("inplanes", "planes"), ("in_chs", "out_chs"),
                  ("in_channel", "out_channel"), ("input_channels", "output_channels")}
REPEAT_PARAMS = ("n", "number", "repeats", "num_blocks")


class RuleSource:
    """How a user block's rule was decided (ModuleEntry.decided)."""

    OPTION = "--rule"
    FILE = "YOLODIAG_RULES"
    STOCK_NAME = "stock name"  # redefines a stock class: parse_model's sets name it
    SIGNATURE = "signature"  # inferred: the constructor takes (c1, c2, ...)
    FALLBACK = "fallback"  # inferred: nothing says it is channel-aware, YOLOv5's fallback
    YOLO_PY = "yolo.py"  # read from the checkout's parse_model (in no branch: its fallback)
    UNMAPPED = "yolo.py branch"  # inferred: the checkout's parse_model has a branch of its own


def constructor_parameters(cls: type) -> list[inspect.Parameter]:
    """The positional parameters of a class's constructor ([] when it has no signature)."""
    try:
        parameters = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return []
    return [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def channel_parameters(cls: type) -> tuple[str, str] | None:
    """The names of the first two constructor parameters when they read as (input, output)."""
    names = tuple(p.name for p in constructor_parameters(cls)[:2])
    return names if names in CHANNEL_PARAMS else None  # type: ignore[return-value]


def inferred_rule(cls: type) -> tuple[str, str]:
    """(rule, RuleSource) from the constructor's parameter names alone."""
    parameters = [p.name for p in constructor_parameters(cls)]
    if channel_parameters(cls) is None:
        return "passthrough", RuleSource.FALLBACK
    repeats = len(parameters) > 2 and parameters[2] in REPEAT_PARAMS
    return ("channels+repeats" if repeats else "channels"), RuleSource.SIGNATURE


def raw_widths(cls: type, args: tuple) -> tuple[Any, Any] | str:
    """(input width, output width) a channel-aware constructor receives from the YAML's raw
    arguments, defaults applied; why it cannot bind them, as text, when it cannot."""
    names = channel_parameters(cls)
    try:
        bound = inspect.signature(cls).bind(*args)
    except TypeError as e:
        return str(e)
    bound.apply_defaults()
    return bound.arguments.get(names[0]), bound.arguments.get(names[1])


def why_raw(entry: ModuleEntry, dialect: Dialect) -> str:
    """Why parse_model passes a block the YAML's arguments unchanged, from how its rule was
    decided."""
    return {
        RuleSource.OPTION: "declared passthrough with --rule",
        RuleSource.FILE: "declared passthrough in YOLODIAG_RULES",
        RuleSource.YOLO_PY: f"in none of the channel-aware branches of {entry.registered_by}'s "
                            "parse_model",
        "repo": "as your parse_model did",
    }.get(entry.decided, f"stock {dialect.possessive} parse_model does not register it as "
                         "channel-aware")


def registration_file(entry: ModuleEntry) -> str:
    """The yolo.py an entry's rule was read from (an unmapped branch's carries its line)."""
    where = entry.registered_by or ""
    return where.rpartition(":")[0] if entry.decided == RuleSource.UNMAPPED else where


def register_fix(module: str, dialect: Dialect, entry: ModuleEntry | None = None) -> str:
    """How to make a block channel-aware; with its entry, also how to tell yolodiag (nothing
    to tell when its rule is read from the checkout's yolo.py, or it is a stock class)."""
    fix = (f"register {module} in parse_model's channel-aware set (c1 = ch[f] inserted, c2 = "
           f"args[0] width-scaled) and write `[c2, ...]`, or use a channel-aware module such "
           f"as {dialect.example('block')}")
    declared = entry is not None and entry.decided in (RuleSource.OPTION, RuleSource.FILE)
    user = entry is not None and entry.cls is not None and entry.decided != RuleSource.YOLO_PY
    return fix + (f" (then declare it: --rule {module}=channels)" if declared or user else "")


def common_namespace(dialect: Dialect) -> dict[str, Any]:
    """What a class pasted from the family's common.py expects to find around it."""
    import collections
    import contextlib
    import copy
    import logging
    import math
    import warnings

    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    from yolodiag.build.plan import Completion, RuleInput, make_divisible

    namespace: dict[str, Any] = {
        "torch": torch, "nn": nn, "F": F, "math": math, "np": np, "copy": copy,
        "warnings": warnings, "contextlib": contextlib, "Path": Path,
        "OrderedDict": collections.OrderedDict, "namedtuple": collections.namedtuple,
        "make_divisible": make_divisible, "RuleInput": RuleInput, "Completion": Completion,
        # Helpers common.py imports from the family's utils, used in class bodies and defaults.
        "LOGGER": logging.getLogger("yolodiag.user"), "check_version": check_version,
    }
    namespace.update(dialect.namespace() if dialect.namespace else {})
    return namespace


def check_version(current: str = "0.0.0", minimum: str = "0.0.0", name: str = "version ",
                  pinned: bool = False, hard: bool = False, verbose: bool = False) -> bool:
    """Whether version `current` is at least (`pinned`: exactly) `minimum`, numerically."""
    def numbers(version: str) -> tuple[int, ...]:
        parts = []
        for part in version.split("+")[0].split("."):
            digits = "".join(c for c in part if c.isdigit())
            parts.append(int(digits) if digits else 0)
        return tuple(parts)

    ok = numbers(current) == numbers(minimum) if pinned else numbers(current) >= numbers(minimum)
    if hard and not ok:
        raise ModuleNotFoundError(f"{name}{minimum} required, but {name}{current} is installed")
    return ok


def load_modules(files: Iterable[str | Path], rules: Iterable[str] = (),
                 dialect: Dialect | None = None) -> dict[str, ModuleEntry]:
    """Module-table entries for the classes defined in `files`, with their channel rules, for
    the model table of `dialect` (default: the default dialect's).

    `rules`: "Name=rule" strings from the command line (also for stock names). Raises
    Unsupported (one line naming the file and line) when a file cannot be read or executed,
    or a rule is unknown.
    """
    dialect = dialect or DIALECTS[DEFAULT]
    table = dialect.modules
    namespace = common_namespace(dialect)
    defined: dict[str, tuple[type, Path, Any]] = {}
    declared: dict[str, Any] = {}
    for file in files:
        path = Path(file)
        root = dialect.checkout.find_checkout(path) if dialect.checkout is not None else None
        registration = dialect.checkout.read_registration(root) if root is not None else None
        namespace["__name__"] = f"yolodiag.user.{path.stem}"
        namespace.pop("YOLODIAG_RULES", None)
        _execute(path, namespace, root, dialect)
        defined.update({name: (value, path, registration) for name, value in namespace.items()
                        if _is_block(value) and value.__module__ == namespace["__name__"]})
        file_rules = namespace.get("YOLODIAG_RULES", {})
        if not isinstance(file_rules, dict):
            raise Unsupported(f"{path}: YOLODIAG_RULES must be a dict of class name -> rule")
        declared.update({name: (rule, path) for name, rule in file_rules.items()})
    options = dict(_parse_rule_option(text) for text in rules)

    entries: dict[str, ModuleEntry] = {}
    for name, (cls, path, registration) in defined.items():
        entry = _entry(name, cls, path, registration, dialect)
        if entry is not None:
            entries[name] = entry
    for name, (rule, path) in declared.items():
        if name not in defined:
            raise Unsupported(f"{path}: YOLODIAG_RULES names {name!r}, which no --modules file "
                              f"defines (classes: {', '.join(sorted(defined)) or 'none'})")
        entries[name] = _with_rule(entries.get(name) or table[name], rule, RuleSource.FILE,
                                   str(path))
    for name, rule in options.items():
        name = canonical_name(name)
        entry = entries.get(name) or table.get(name)
        if entry is None:
            raise Unsupported(f"--rule {name}={rule}: no module {name!r} in the module table "
                              "or in the --modules files")
        entries[name] = _with_rule(entry, rule, RuleSource.OPTION, "--rule")
    return entries


def _entry(name: str, cls: type, path: Path, registration: Any,
           dialect: Dialect) -> ModuleEntry | None:
    """The module-table entry of one class of a --modules file; None when it is the table's own
    class under the table's rule (a stock class of the user's common.py)."""
    registered = _registered(name, cls, registration)
    table = dialect.modules.get(name)
    differs = (dialect.stockmatch.differences(cls, table.load(), name, table.rule)
               if table is not None and table.decided in ("table", "seed")
               and dialect.stockmatch is not None else None)
    if table is not None and differs is None and table.decided in ("table", "seed"):
        if registered is None:
            return None
        rule, decided, where = registered
        if rule == table.rule and table.decided == "table":  # the stock class, as registered
            return replace(table, registered_by=where)
        return replace(table, rule=rule, decided=decided, registered_by=where)
    if registered is not None:
        rule, decided, where = registered
    elif table is not None and table.decided == "table":
        # parse_model's sets hold names resolved at call time, so a class redefined under a
        # stock name keeps that name's rule there (yolodiag's own additions do not).
        (rule, decided), where = (table.rule, RuleSource.STOCK_NAME), None
    else:
        (rule, decided), where = inferred_rule(cls), None
    return ModuleEntry(name, str(path), rule, cls=cls, decided=decided, registered_by=where,
                       differs=differs)


def _registered(name: str, cls: type, registration: Any) -> tuple[str, str, str] | None:
    """(rule, RuleSource, where) from the checkout's parse_model, when there is one."""
    if registration is None:
        return None
    if name in registration.rules:
        return registration.rules[name], RuleSource.YOLO_PY, registration.source
    if name in registration.unmapped:
        return (inferred_rule(cls)[0], RuleSource.UNMAPPED,
                f"{registration.source}:{registration.unmapped[name]}")
    return "passthrough", RuleSource.YOLO_PY, registration.source  # in no branch: the fallback


def _execute(path: Path, namespace: dict[str, Any], root: Path | None,
             dialect: Dialect) -> None:
    """Run the user's file (they asked for it with --modules); errors as one line. A file of a
    checkout runs with the checkout's root first on sys.path, as its own code does (its
    `from utils.general import ...` lines are the checkout's, not another package's)."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise Unsupported(f"{path}: cannot read the --modules file: {e}") from e
    if root is not None:
        sys.path.insert(0, str(root))
    try:
        code = compile(source, str(path), "exec")
        exec(code, namespace)  # noqa: S102 - the user's own Python, explicitly opted in
    except SyntaxError as e:
        raise Unsupported(f"{path}:{e.lineno}: SyntaxError: {e.msg}") from e
    except Exception as e:
        line = next((frame.lineno for frame in reversed(traceback.extract_tb(e.__traceback__))
                     if frame.filename == str(path)), None)
        where = f"{path}:{line}" if line else str(path)
        if isinstance(e, ImportError):
            raise Unsupported(_import_failed(where, source, line, e, root,
                                             dialect.title)) from e
        raise Unsupported(f"{where}: running the --modules file raised "
                          f"{type(e).__name__}: {e}") from e
    finally:
        if root is not None and str(root) in sys.path:
            sys.path.remove(str(root))


def _import_failed(where: str, source: str, line: int | None, error: ImportError,
                   root: Path | None, title: str) -> str:
    """One line: which import failed, and the two ways that work."""
    statement = source.splitlines()[line - 1].strip() if line else ""
    statement = statement if len(statement) <= 60 else statement[:57] + "..."
    statement = f" (`{statement}`)" if statement else ""
    checkout = str(root) if root is not None else f"<your {title} checkout>"
    return (f"{where}: cannot run the --modules file here: its import{statement} fails with "
            f"{type(error).__name__}: {error}; use `--repo {checkout}` (builds with your own "
            f"{title} in its interpreter, --repo-python) or pass a file holding just your "
            f"classes")


def _is_block(value: Any) -> bool:
    from torch import nn

    return inspect.isclass(value) and issubclass(value, nn.Module)


def _parse_rule_option(text: str) -> tuple[str, str]:
    name, sep, rule = text.partition("=")
    if not sep or not name.strip() or not rule.strip():
        raise Unsupported(f"--rule {text!r}: expected Name=rule, e.g. --rule MyBlock=channels")
    return name.strip(), rule.strip()


def _with_rule(entry: ModuleEntry, rule: Any, decided: str, where: str) -> ModuleEntry:
    if callable(rule):
        return replace(entry, rule="custom", custom=_custom_rule(rule), decided=decided)
    if rule not in DECLARABLE:
        raise Unsupported(f"{where}: unknown rule {rule!r} for {entry.name} (one of: "
                          f"{', '.join(DECLARABLE)}, or a function of RuleInput)")
    return replace(entry, rule=rule, custom=None, decided=decided)


def _custom_rule(function: Callable) -> Callable:
    """A user's function mirroring a dedicated parse_model branch: it receives the RuleInput
    and returns a Completion or `(args, c2)` (copies stacked: the row's number)."""
    from yolodiag.build.plan import Completion

    def rule(r):
        done = function(r)
        if isinstance(done, Completion):
            return done
        args, c2 = done
        return Completion(tuple(args), int(c2), r.number)

    return rule
